"""The optimizers study: every update rule at its best learning rate on MNIST-1D, their
effective step sizes, 2-D trajectories, and learning-rate schedules (TECHNIQUES.md section 3).

Each optimizer runs at every learning rate of its grid (three values around its usual one) on
every seed; the claims and figures use, per optimizer, the learning rate with the lowest mean
best validation loss (chosen on validation, never on test). Adadelta's grid holds η = 1, its
untuned default. The baseline is Adam at η = 1e-3, the default recipe: also the grid's middle
Adam point and the constant schedule.
"""

from __future__ import annotations

import math
from typing import Any

from reglab.lab.study.chapters.common import best_arm, mean_line, points, seedwise, steps_per_epoch
from reglab.lab.study.chapters.spec import ArmSpec, section
from reglab.lab.study.claims import FAILS, HOLDS, INCONCLUSIVE, Claim, Evidence, Finding, metric, paired_finding
from reglab.lab.study.panels import Panel, panels_png
from reglab.lab.study.stats import BASELINE

EPOCHS = 30
FULL_BATCH = 4000  # ≥ MNIST-1D's 3,200 training samples: one step an epoch

# key -> (what it is, recipe changes besides the lr, the learning rates tried)
GRID: dict[str, tuple[str, dict[str, Any], tuple[float, ...]]] = {
    "gd": ("full-batch gradient descent", {"optimizer.name": "sgd", "data.batch_size": FULL_BATCH}, (0.1, 0.3, 1.0)),
    "sgd": ("mini-batch SGD (batch 100)", {"optimizer.name": "sgd"}, (0.03, 0.1, 0.3)),
    "momentum": ("heavy-ball momentum β = 0.9", {"optimizer.name": "sgd", "optimizer.options.momentum": 0.9},
                 (0.003, 0.01, 0.03)),
    "nesterov": ("Nesterov momentum β = 0.9", {"optimizer.name": "sgd", "optimizer.options.momentum": 0.9,
                                               "optimizer.options.nesterov": True}, (0.003, 0.01, 0.03)),
    "adagrad": ("Adagrad", {"optimizer.name": "adagrad"}, (0.003, 0.01, 0.03)),
    "adadelta": ("Adadelta (η = 1 is its untuned default)", {"optimizer.name": "adadelta"}, (0.3, 1.0, 3.0)),
    "rmsprop": ("RMSprop, ε outside the root (PyTorch)", {"optimizer.name": "rmsprop"}, (3e-4, 1e-3, 3e-3)),
    "rmsprop-course": ("RMSprop, ε inside the root (the course)", {"optimizer.name": "rmsprop",
                       "optimizer.options.eps_in_sqrt": True}, (3e-4, 1e-3, 3e-3)),
    "adam": ("Adam", {}, (3e-4, 1e-3, 3e-3)),
    "adam-uncorrected": ("Adam without bias correction", {"optimizer.options.bias_correction": False},
                         (3e-4, 1e-3, 3e-3)),
    "adamw": ("AdamW (λ = 1e-2)", {"optimizer.name": "adamw"}, (3e-4, 1e-3, 3e-3)),
}  # fmt: skip

SCHEDULES: dict[str, tuple[str, dict[str, Any]]] = {
    "step": ("step decay: η × 0.1 every 10 epochs", {"schedule.name": "step", "schedule.step_size": 10}),
    "cosine": ("cosine decay to 0", {"schedule.name": "cosine"}),
    "warmup-cosine": ("3 epochs of linear warm-up, then cosine", {"schedule.name": "cosine",
                                                                  "schedule.warmup_epochs": 3}),
    "onecycle": ("one-cycle: up to η for 30% of training, then down", {"schedule.name": "onecycle"}),
    "plateau": ("η × 0.1 after 3 epochs without a better validation loss", {"schedule.name": "plateau",
                                                                            "schedule.patience": 3}),
}  # fmt: skip


def arm_name(key: str, lr: float) -> str:
    return BASELINE if (key, lr) == ("adam", 1e-3) else f"{key}-lr-{lr:g}"


def grid_arms(key: str) -> list[str]:
    return [arm_name(key, lr) for lr in GRID[key][2]]


def schedule_arm(name: str) -> str:
    return f"schedule-{name}"


ARMS: dict[str, ArmSpec] = {
    arm_name(key, lr): ArmSpec(f"{what}, η = {lr:g}", {**changes, "optimizer.lr": lr})
    for key, (what, changes, lrs) in GRID.items()
    for lr in lrs
}
ARMS.update({schedule_arm(n): ArmSpec(f"Adam η = 1e-3, {what}", changes) for n, (what, changes) in SCHEDULES.items()})


def _best(evidence: Evidence, key: str) -> str | None:
    return best_arm(evidence, grid_arms(key))


def _steps_to(row: dict[str, Any], target: float) -> float:
    """Steps until the epoch's training loss is at most ``target`` (inf if it never is)."""
    for record in row["history"]:
        if record["train_loss"] is not None and record["train_loss"] <= target:
            return record["epoch"] * steps_per_epoch(row)
    return math.inf


def _fewer_steps(which: str):
    def measure(evidence: Evidence) -> Finding:
        sgd, fast = _best(evidence, "sgd"), _best(evidence, which)
        if sgd is None or fast is None:
            return Finding(INCONCLUSIVE, "no finished trial of sgd or " + which, {}, "run the study")

        def passes(rows):
            target = rows[sgd]["history"][-1]["train_loss"]
            a, b = _steps_to(rows[fast], target), _steps_to(rows[sgd], target)
            return a < b, f"{fast} {a:g} steps vs {sgd} {b:g} to training loss {target:.3f}"

        return seedwise(evidence, [fast, sgd], passes)

    return measure


def _overshoot(evidence: Evidence) -> Finding:
    from reglab.lab.study import surfaces

    said = surfaces.momentum_overshoots()
    words = (
        f"past the ravine's minimum along the valley, at β = 0.9 and η = {said['lr']:g} (heavy ball's best): heavy "
        f"ball {said['momentum']:.3g}, Nesterov {said['nesterov']:.3g}"
    )
    return Finding(HOLDS if said["nesterov"] < said["momentum"] else FAILS, words, said)


def _step_ratio(row: dict[str, Any]) -> float:
    steps = [r.get("step_size") for r in row["history"] if r.get("step_size") is not None]
    return steps[-1] / steps[0] if len(steps) > 1 and steps[0] > 0 else math.nan


def _adagrad_shrinks(evidence: Evidence) -> Finding:
    arms = {k: _best(evidence, k) for k in ("adagrad", "rmsprop", "adam")}
    if None in arms.values():
        return Finding(INCONCLUSIVE, "no finished trial of " + ", ".join(k for k, a in arms.items() if a is None),
                       {}, "run the study")  # fmt: skip

    def passes(rows):
        r = {k: _step_ratio(rows[a]) for k, a in arms.items()}
        ok = r["adagrad"] < 0.5 <= min(r["rmsprop"], r["adam"])
        return ok, ", ".join(f"{arms[k]} ×{v:.2f}" for k, v in r.items())

    return seedwise(evidence, list(arms.values()), passes)


ADADELTA_SLACK = 1.1  # "trains without a tuned η": within 10% of tuned Adam's best validation loss


def _adadelta_untuned(evidence: Evidence) -> Finding:
    adam = _best(evidence, "adam")
    untuned = arm_name("adadelta", 1.0)
    if adam is None:
        return Finding(INCONCLUSIVE, "no finished Adam trial", {}, "run the study")

    def passes(rows):
        a, b = metric(rows[untuned], "best_valid_loss"), metric(rows[adam], "best_valid_loss")
        return a <= ADADELTA_SLACK * b, f"{untuned} {a:.3f} vs {adam} {b:.3f}"

    return seedwise(evidence, [untuned, adam], passes)


def _loss_at_time(row: dict[str, Any], seconds: float) -> float:
    """The training loss of the last epoch finished within ``seconds`` of training (NaN if none)."""
    elapsed, loss = 0.0, math.nan
    for record in row["history"]:
        elapsed += record["time"]
        if elapsed > seconds:
            break
        loss = record["train_loss"]
    return loss


def _per_second(evidence: Evidence) -> Finding:
    gd, sgd = _best(evidence, "gd"), _best(evidence, "sgd")
    if gd is None or sgd is None:
        return Finding(INCONCLUSIVE, "no finished trial of gd or sgd", {}, "run the study")

    def passes(rows):
        budget = sum(r["time"] for r in rows[gd]["history"])
        a, b = _loss_at_time(rows[sgd], budget), rows[gd]["history"][-1]["train_loss"]
        return a < b, f"in {budget:.2f} s (gd's whole run) {sgd} reached {a:.3f}, {gd} {b:.3f}"

    return seedwise(evidence, [gd, sgd], passes)


_FAMILY = tuple((schedule_arm(n), BASELINE) for n in SCHEDULES)


def _schedule_claim(name: str) -> Claim:
    return Claim(
        f"schedule-{name}",
        f"A schedule that lowers the learning rate late lowers the final validation loss: {SCHEDULES[name][0]}.",
        f"The final validation loss of {schedule_arm(name)} against the constant η (baseline), seed by seed (paired "
        f"t-test, Holm over the {len(SCHEDULES)} schedules): holds if lower with p < 0.05, does not hold if higher "
        "with p < 0.05.",
        lambda ev: paired_finding(
            ev,
            schedule_arm(name),
            BASELINE,
            "final_valid_loss",
            lower=True,
            family=_FAMILY,
            label="final validation loss",
        ),  # fmt: skip
    )


CLAIMS = (
    Claim(
        "momentum-fewer-steps",
        "Momentum and Nesterov reach a given training loss in fewer steps than plain SGD: heavy ball.",
        "Each at its learning rate chosen on validation loss; the target is plain SGD's final training loss in that "
        "seed: holds if in every seed momentum reaches it in fewer steps than SGD, does not hold if in none.",
        _fewer_steps("momentum"),
    ),
    Claim(
        "nesterov-fewer-steps",
        "Momentum and Nesterov reach a given training loss in fewer steps than plain SGD: Nesterov.",
        "Each at its learning rate chosen on validation loss; the target is plain SGD's final training loss in that "
        "seed: holds if in every seed Nesterov reaches it in fewer steps than SGD, does not hold if in none.",
        _fewer_steps("nesterov"),
    ),
    Claim(
        "nesterov-overshoots-less",
        "Nesterov overshoots the ravine's minimum less than heavy-ball momentum.",
        "On the ravine f = ½(x²/10 + 10y²) from (−9, 1), both at β = 0.9 and at heavy ball's best η on it: how far "
        "each goes past the minimum along the valley (x); holds if Nesterov's overshoot is smaller, does not hold "
        "otherwise (deterministic: one trajectory each).",
        _overshoot,
    ),
    Claim(
        "adagrad-step-shrinks",
        "Adagrad's effective step shrinks toward zero while RMSprop's and Adam's do not.",
        "The effective step (median |ΔW|/|g| at an epoch's last step) of the last epoch over the first, each at its "
        "chosen η: holds if in every seed Adagrad's falls below half while RMSprop's and Adam's stay at or above "
        "half, does not hold if in no seed.",
        _adagrad_shrinks,
    ),
    Claim(
        "adadelta-needs-no-lr",
        "Adadelta trains without a tuned learning rate.",
        f"Adadelta at its default η = 1 against Adam at its tuned η: holds if in every seed Adadelta's best "
        f"validation loss is within {ADADELTA_SLACK - 1:.0%} of Adam's, does not hold if in none.",
        _adadelta_untuned,
    ),
    Claim(
        "minibatch-faster",
        "Mini-batches make more progress per second than full-batch gradient descent.",
        "Each at its chosen η: SGD's training loss after as many seconds of training as full-batch GD's whole run, "
        "against GD's final training loss: holds if lower in every seed, does not hold if in none.",
        _per_second,
    ),
    *(_schedule_claim(n) for n in SCHEDULES),
)


# -- figures ---------------------------------------------------------------------------------------
def _label(evidence: Evidence, arm: str) -> str:
    lr = evidence.groups[arm][0]["recipe"]["optimizer"]["lr"]
    key = next(k for k in GRID if arm in grid_arms(k))
    return f"{key} (η={lr:g})"


def loss_panels(evidence: Evidence) -> list[Panel]:
    """Training and validation loss against steps and against seconds, each optimizer at its η."""
    best = [a for a in (_best(evidence, k) for k in GRID) if a]
    out = []
    for x, xlabel in (("step", "steps"), ("time", "seconds of training")):
        for key, what in (("train_loss", "training loss"), ("valid_loss", "validation loss")):
            lines = {_label(evidence, a): mean_line(evidence.groups[a], key, x) for a in best}
            out.append(Panel(f"{what} against {xlabel}", xlabel, what, lines, log_x=x == "step"))
    return out


def grid_panel(evidence: Evidence) -> Panel:
    lines, spread = {}, {}
    for key in GRID:
        xs, ys, sd = points(evidence, grid_arms(key), lambda r: r["recipe"]["optimizer"]["lr"], "best_valid_loss")
        if xs:
            lines[key], spread[key] = (xs, ys), sd
    return Panel("the learning-rate grid (mean ± std over seeds)", "learning rate η", "best validation loss", lines,
                 spread, log_x=True, markers=True)  # fmt: skip


def step_panel(evidence: Evidence) -> Panel:
    best = [a for a in (_best(evidence, k) for k in GRID) if a]
    lines = {_label(evidence, a): mean_line(evidence.groups[a], "step_size", "step") for a in best}
    return Panel("effective step: median |ΔW| / |g| at each epoch's last step", "steps", "effective step size",
                 {k: v for k, v in lines.items() if v[0]}, log_x=True, log_y=True)  # fmt: skip


def schedule_panels(evidence: Evidence) -> list[Panel]:
    arms = [BASELINE, *(schedule_arm(n) for n in SCHEDULES)]
    names = {BASELINE: "constant", **{schedule_arm(n): n for n in SCHEDULES}}
    done = [a for a in arms if evidence.groups.get(a)]
    return [
        Panel("learning rate per epoch", "epoch", "learning rate η",
              {names[a]: mean_line(evidence.groups[a], "lr") for a in done}),
        Panel("validation loss per epoch", "epoch", "validation loss",
              {names[a]: mean_line(evidence.groups[a], "valid_loss") for a in done}),
    ]  # fmt: skip


def figures(evidence: Evidence) -> list[str]:
    from reglab.lab.study import surfaces

    out = []
    if any(evidence.groups.get(a) for k in GRID for a in grid_arms(k)):
        out += section(
            "Each optimizer at its best learning rate",
            panels_png(loss_panels(evidence)),
            "training and validation loss against steps and seconds per optimizer",
            "Mean over seeds, each optimizer at the learning rate of its grid with the lowest best validation loss. "
            "Top: against optimizer steps (log axis: full-batch GD takes one step an epoch); bottom: against seconds "
            "of training. Compare how many steps each needs to reach a loss, and how far each gets in the seconds "
            "full-batch GD took.",
        )
        out += section(
            "The learning rate each optimizer was given",
            panels_png([grid_panel(evidence)], columns=1, size=(7.5, 4.2)),
            "best validation loss against the learning rate per optimizer",
            "Each optimizer's best validation loss at each learning rate of its grid: the lowest point is the one "
            "used above. A minimum at the edge of a grid means the best η may lie outside it.",
        )
        out += section(
            "Effective step size",
            panels_png([step_panel(evidence)], columns=1, size=(7.5, 4.2)),
            "effective step size against steps per optimizer",
            "The step the optimizer actually takes per unit of gradient (median over the weights of |ΔW|/|g|), log "
            "axes. SGD's is its η; Adagrad's sum of squared gradients only grows, so its step can only fall; "
            "RMSprop's and Adam's running averages forget, so theirs follow the gradients' current scale.",
        )
    png, _ = surfaces.trajectories_png()
    out += section(
        "Trajectories on three test functions",
        png,
        "optimizer trajectories over the contours of a ravine, Rosenbrock and Beale functions",
        "Every optimizer from the same start (black dot), each at the step size of its grid that ends lowest on "
        "that function (in the legend), computed with reglab's optimizers. On the ravine look for gradient "
        "descent zigzagging across the steep direction and momentum overshooting along the valley.",
    )
    if any(evidence.groups.get(schedule_arm(n)) for n in SCHEDULES):
        out += section(
            "Learning-rate schedules",
            panels_png(schedule_panels(evidence)),
            "learning rate and validation loss per epoch for each schedule",
            "Adam at η = 1e-3 under each schedule (mean over seeds): the learning rate each epoch ran at, and the "
            "validation loss: does lowering η late let the weights settle lower?",
        )
    return out
