"""The optimizers study's 2-D trajectories: reglab's optimizers, checked step by step against
the float64 equations of TECHNIQUES.md section 3 (tests/optim/reference.py)."""

import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "optim"))
from reference import adadelta, adagrad, adam, adamw, momentum, rmsprop, run, sgd  # noqa: E402

from reglab.lab.study import surfaces  # noqa: E402


def rosenbrock_grad(w, t):
    x, y = w
    return np.array([-2 * (1 - x) - 400 * x * (y - x**2), 200 * (y - x**2)])


def nesterov(lr, beta):  # a <- beta a + g ; W <- W - lr (g + beta a)
    def update(w, g, s, t):
        a = beta * s.get("a", 0.0) + g
        return w - lr * (g + beta * a), {"a": a}

    return update


REFERENCES = {
    "gd": lambda lr: sgd(lr),
    "momentum": lambda lr: momentum(lr, 0.9),
    "nesterov": lambda lr: nesterov(lr, 0.9),
    "adagrad": lambda lr: adagrad(lr, 1e-10, False),
    "adadelta": lambda lr: adadelta(lr, 0.9, 1e-6),
    "rmsprop": lambda lr: rmsprop(lr, 0.99, 1e-8, False),
    "adam": lambda lr: adam(lr, 0.9, 0.999, 1e-8, False),
    "adamw": lambda lr: adamw(lr, 0.9, 0.999, 1e-8, 1e-2),
}


@pytest.mark.parametrize("name", list(surfaces.OPTIMIZERS))
def test_first_steps_follow_the_optimizers_equation(name):
    assert set(REFERENCES) == set(surfaces.OPTIMIZERS)
    surface = surfaces.SURFACES["rosenbrock"]
    lr = 1e-3 if name in ("gd", "momentum", "nesterov") else 0.05
    path = surfaces.trajectory(surface, name, lr, steps=4)
    start = np.array(surface.start)
    for t in range(1, 5):
        want = run(REFERENCES[name](lr), start, rosenbrock_grad, t)
        np.testing.assert_allclose(path[t], want, rtol=1e-12, atol=1e-14)


def test_best_run_is_the_lowest_final_value_of_the_grid():
    ravine = surfaces.SURFACES["ravine"]
    run_ = surfaces.best_run(ravine, "gd", steps=30)
    finals = dict(run_["grid"])
    assert run_["final"] == min(finals.values()) and finals[run_["lr"]] == run_["final"]
    assert len(finals) == len(surfaces.STEP_GRID)
    diverged = [lr for lr, f in finals.items() if not np.isfinite(f)]
    assert diverged and min(diverged) > run_["lr"]  # gd on the steep axis: too large a step blows up


def test_overshoot_measures_how_far_past_the_minimum_along_the_valley():
    path = np.array([[-9.0, 1.0], [-3.0, 0.5], [2.5, 0.1], [-0.5, 0.0], [np.nan, np.nan]])
    assert surfaces.overshoot(path) == 2.5
    assert surfaces.overshoot(np.array([[-9.0, 1.0], [-1.0, 0.0]])) == 0.0
    said = surfaces.momentum_overshoots(steps=60)
    assert said["momentum"] > 0  # heavy ball at β = 0.9 crosses the minimum of the ravine
