"""Learning-rate schedules against their closed forms (float64), and their callback."""

import math

import pytest
import torch

import reglab.optim as ro
from reglab.lab.recipe import Recipe, ScheduleConfig
from reglab.optim.schedules import build_scheduler
from reglab.train import LRScheduler

LR, EPOCHS = 0.1, 20


def lrs(config: ScheduleConfig, metrics=None, opt_cls=ro.SGD):
    p = torch.zeros(1, requires_grad=True)
    opt = opt_cls([p], lr=LR)
    sched = build_scheduler(config, opt, EPOCHS)
    seen = []
    for t in range(EPOCHS):
        seen.append(opt.param_groups[0]["lr"])
        p.grad = torch.zeros(1)
        opt.step()
        LRScheduler(sched, config.monitor).on_epoch_end(None, {"valid_loss": metrics[t] if metrics else 0.0})
    return seen


def close(got, want):
    assert got == pytest.approx(want, rel=1e-12, abs=1e-15)


def test_none_is_constant():
    assert build_scheduler(ScheduleConfig(), ro.SGD([torch.zeros(1, requires_grad=True)], lr=LR), EPOCHS) is None


def test_step():
    close(lrs(ScheduleConfig(name="step", step_size=6, gamma=0.5)), [LR * 0.5 ** (t // 6) for t in range(EPOCHS)])


def test_multistep():
    want = [LR * 0.1 ** sum(m <= t for m in (5, 12)) for t in range(EPOCHS)]
    close(lrs(ScheduleConfig(name="multistep", milestones=[5, 12], gamma=0.1)), want)


def test_exponential():
    close(lrs(ScheduleConfig(name="exponential", gamma=0.9)), [LR * 0.9**t for t in range(EPOCHS)])


def test_cosine():
    want = [1e-3 + (LR - 1e-3) * (1 + math.cos(math.pi * t / EPOCHS)) / 2 for t in range(EPOCHS)]
    close(lrs(ScheduleConfig(name="cosine", min_lr=1e-3)), want)


def test_linear_warmup_then_cosine():
    w, s = 4, 0.1
    rest = EPOCHS - w
    want = [LR * (s + (1 - s) * t / w) for t in range(w)]
    want += [LR * (1 + math.cos(math.pi * (t - w) / rest)) / 2 for t in range(w, EPOCHS)]
    close(lrs(ScheduleConfig(name="cosine", warmup_epochs=w, warmup_start_factor=s)), want)


def test_warmup_alone():
    got = lrs(ScheduleConfig(warmup_epochs=5, warmup_start_factor=0.2))
    close(got, [LR * (0.2 + 0.8 * t / 5) for t in range(5)] + [LR] * (EPOCHS - 5))


def test_onecycle_shape():
    got = lrs(ScheduleConfig(name="onecycle", pct_start=0.3))
    peak = got.index(max(got))
    assert got[0] == pytest.approx(LR / 25) and max(got) == pytest.approx(LR)
    assert peak == round(0.3 * EPOCHS) - 1 and got[-1] < LR / 1000
    assert all(a <= b for a, b in zip(got[:peak], got[1 : peak + 1]))


def test_onecycle_cycles_adam_beta1():
    p = torch.zeros(1, requires_grad=True)
    opt = ro.Adam([p], lr=LR)
    sched = build_scheduler(ScheduleConfig(name="onecycle"), opt, EPOCHS)
    assert opt.param_groups[0]["betas"][0] == pytest.approx(0.95)
    for _ in range(round(0.3 * EPOCHS) - 1):  # up to the peak of lr: beta1 at its minimum
        p.grad = torch.zeros(1)
        opt.step()
        sched.step()
    assert opt.param_groups[0]["betas"][0] == pytest.approx(0.85)


def test_plateau_reduces_after_patience_epochs_without_improvement():
    metrics = [1.0, 0.9, 0.8] + [0.8] * 17
    got = lrs(ScheduleConfig(name="plateau", patience=3, factor=0.5), metrics)
    # best at epoch index 2; indices 3,4,5 bring no improvement; the 4th (index 6) reduces
    assert got[:7] == [LR] * 7 and got[7] == pytest.approx(LR / 2)


@pytest.mark.parametrize(
    "change, word",
    [
        ({"name": "linear"}, "schedule.name"),
        ({"gamma": 0.0}, "schedule.gamma"),
        ({"milestones": [10, 5]}, "increasing"),
        ({"name": "plateau", "warmup_epochs": 3}, "warmup"),
        ({"factor": 1.0}, "schedule.factor"),
    ],
)
def test_bad_schedule_options(change, word):
    with pytest.raises((ValueError, TypeError), match=word):
        Recipe.from_dict({"schedule": change})


@pytest.mark.parametrize(
    "schedule, epochs, word",
    [
        ({"name": "multistep"}, 100, r"schedule.milestones is empty"),
        ({"name": "multistep", "milestones": [10, 20]}, 10, r"schedule.milestones \[10, 20\]"),
        ({"name": "step", "step_size": 30}, 30, r"schedule.step_size = 30"),
        ({"name": "step", "step_size": 5, "warmup_epochs": 5}, 10, r"schedule.step_size = 5"),
        ({"warmup_epochs": 5}, 5, r"schedule.warmup_epochs = 5"),
        ({"name": "cosine", "warmup_epochs": 8}, 3, r"schedule.warmup_epochs = 8"),
    ],
)
def test_a_schedule_that_would_never_act_is_refused(schedule, epochs, word):
    """A decay that falls after the last epoch, or a warm-up that never reaches the full rate, is
    a mistake (often a shortened --epochs); the error names the field and training.epochs.
    multistep without milestones never decays either."""
    with pytest.raises(ValueError, match=word) as e:
        Recipe.from_dict({"schedule": schedule, "training": {"epochs": epochs}})
    assert "empty" in word or f"training.epochs = {epochs}" in str(e.value)


@pytest.mark.parametrize(
    "schedule",
    [
        {"name": "step", "step_size": EPOCHS - 1},
        {"name": "step", "step_size": 4, "warmup_epochs": EPOCHS - 5},
        {"name": "multistep", "milestones": [EPOCHS - 1, EPOCHS + 10]},
        {"name": "cosine", "warmup_epochs": EPOCHS - 1},
    ],
)
def test_the_latest_accepted_decay_acts_in_the_last_epoch(schedule):
    """The boundary the check above allows: the last epoch runs at a changed rate."""
    config = Recipe.from_dict({"schedule": schedule, "training": {"epochs": EPOCHS}}).schedule
    got = lrs(config)
    if config.warmup_epochs and config.name == "cosine":
        assert got[-2] < LR and got[-1] == pytest.approx(LR)  # warm-up reaches the full rate in the last epoch
    else:
        assert got[-2] == pytest.approx(LR) and got[-1] == pytest.approx(LR * config.gamma)
