"""Mixup, CutMix and label smoothing: distributional and exact properties."""

import numpy as np
import pytest
import scipy.stats
import torch
import torch.nn.functional as F

from reglab.augment import (
    LabelSmoothing,
    Mixing,
    cutmix,
    mixup,
    one_hot,
    sample_beta,
    smooth_labels,
    soft_cross_entropy,
)


def gen(seed=0):
    return torch.Generator().manual_seed(seed)


def test_mixup_lambda_follows_beta():
    """KS test (fixed seed, generous threshold) of the sampler and of the λ mixup actually used."""
    lam = sample_beta(0.4, 5000, gen(1))
    assert scipy.stats.kstest(lam, scipy.stats.beta(0.4, 0.4).cdf).pvalue > 0.01
    n = 1500
    x = torch.eye(n).reshape(n, 1, n)  # sample i is e_i: x_mixed[i, i] = λ_i
    mx, _ = mixup(x, torch.zeros(n, dtype=torch.long), gen(2), alpha=0.4, num_classes=2, mode="elem")
    used = [float(mx[i, 0, i]) for i in range(n) if float(mx[i, 0, i]) != 1.0 or mx[i, 0].count_nonzero() > 1]
    assert len(used) > n - 10
    assert scipy.stats.kstest(used, scipy.stats.beta(0.4, 0.4).cdf).pvalue > 0.01


@pytest.mark.parametrize("mode", ["batch", "elem"])
@pytest.mark.parametrize("n", [1, 7, 32])
def test_mixup_is_a_convex_combination_per_sample(mode, n):
    """Sample i's input is the basis vector e_i, so x_mixed[i] = λ_i e_i + (1 − λ_i) e_j shows λ_i and j."""
    x = torch.eye(n).reshape(n, 1, n)
    y = torch.randint(0, 4, (n,), generator=gen(3))
    mx, my = mixup(x, y, gen(4), alpha=1.0, num_classes=4, mode=mode)
    assert mx.shape == x.shape and my.shape == (n, 4)
    onehot = F.one_hot(y, 4).float()
    lams = []
    for i in range(n):
        row = mx[i, 0]
        j = int(torch.where(torch.arange(n) == i, torch.zeros(n), row).argmax()) if n > 1 else i
        lam = float(row[i]) if j != i else 1.0
        if j != i:
            assert float(row.sum()) == pytest.approx(1.0) and float(row[j]) == pytest.approx(1 - lam)
        assert torch.allclose(my[i], lam * onehot[i] + (1 - lam) * onehot[j], atol=1e-6)
        lams.append(lam)
    assert torch.allclose(my.sum(1), torch.ones(n))
    mixed = [lam for lam in lams if lam != 1.0]  # samples paired with themselves keep λ = 1
    if mode == "batch" and n > 2:
        assert max(mixed) - min(mixed) < 1e-6, "one λ per batch"
    if mode == "elem" and n > 2:
        assert max(mixed) - min(mixed) > 1e-3, "one λ per sample"


@pytest.mark.parametrize("shape", [(16, 3, 12, 9), (16, 1, 40)], ids=["images", "signals"])
@pytest.mark.parametrize("mode", ["batch", "elem"])
def test_cutmix_label_weight_is_the_kept_area_exactly(shape, mode):
    x = torch.zeros(shape)
    x += torch.arange(shape[0]).reshape(-1, *([1] * (len(shape) - 1)))  # sample i is filled with i
    y = torch.arange(shape[0]) % 5
    mx, my = cutmix(x, y, gen(5), alpha=1.0, num_classes=5, mode=mode)
    for i in range(shape[0]):
        kept = float((mx[i] == i).float().mean())
        if (mx[i] == i).all():
            continue
        own = F.one_hot(y[i], 5).float()
        assert float((my[i] * own).sum()) >= kept - 1e-6  # own class weight >= kept area (partner may share it)
        partner = int(mx[i][mx[i] != i][0])
        want = kept * own + (1 - kept) * F.one_hot(y[partner], 5).float()
        assert torch.allclose(my[i], want, atol=1e-6)
    assert torch.allclose(my.sum(1), torch.ones(shape[0]))


def test_cutmix_box_is_clipped_at_the_border():
    n, side = 400, 8
    x = torch.arange(n, dtype=torch.float32).reshape(-1, 1, 1, 1).expand(n, 1, side, side).clone()
    mx, my = cutmix(x, torch.zeros(n, dtype=torch.long), gen(6), alpha=1.0, num_classes=2, mode="elem")
    lam = sample_beta(1.0, n, gen(6))  # the same λ draws as the call above (its first use of the generator)
    nominal = np.round(np.sqrt(1 - lam) * side) ** 2 / side**2
    pasted = np.array([float((mx[i] != i).float().mean()) for i in range(n)])
    partner_is_self = np.array([bool((mx[i] == i).all()) for i in range(n)])
    ok = ~partner_is_self
    assert np.all(pasted[ok] <= nominal[ok] + 1e-6)
    assert np.mean(pasted[ok] < nominal[ok] - 1e-6) > 0.2, "boxes reaching past the border are clipped"


def test_label_smoothing_equation_and_soft_cross_entropy():
    y = torch.tensor([0, 2, 1])
    got = smooth_labels(y, 4, 0.1)
    want = torch.tensor([[0.925, 0.025, 0.025, 0.025], [0.025, 0.025, 0.925, 0.025], [0.025, 0.925, 0.025, 0.025]])
    assert torch.allclose(got, want)
    logits = torch.randn(3, 4, dtype=torch.float64, generator=gen(7))
    ref = -(got.double() * torch.log_softmax(logits, 1)).sum(1).mean()
    assert torch.allclose(soft_cross_entropy(logits, got.double()), ref)
    assert torch.allclose(soft_cross_entropy(logits, got.double()), F.cross_entropy(logits, y, label_smoothing=0.1))
    _, ys = LabelSmoothing(4, 0.1)(torch.zeros(3, 1), y, gen())
    assert torch.equal(ys, got)


def test_mixing_policy_switches_and_respects_prob():
    x = torch.randn(8, 1, 16, 16, generator=gen(8))
    y = torch.arange(8) % 3
    mx, my = Mixing(3, mixup_alpha=1.0, prob=0.0)(x, y, gen())
    assert torch.equal(mx, x) and torch.equal(my, F.one_hot(y, 3).float())
    kinds = []
    for s in range(40):
        mx, _ = Mixing(3, mixup_alpha=1.0, cutmix_alpha=1.0, switch_prob=0.5)(x, y, gen(s))
        # CutMix copies pixels: each output pixel is some sample's pixel at that place; Mixup blends
        copied = all(bool((mx[i][None] == x).any(0).all()) for i in range(8))
        kinds.append("cutmix" if copied else "mixup")
    assert 10 <= kinds.count("cutmix") <= 30


@pytest.mark.parametrize(
    "call, word",
    [
        (lambda: mixup(torch.zeros(2, 3), torch.zeros(2, dtype=torch.long), gen(), alpha=0.0, num_classes=2), "alpha"),
        (lambda: cutmix(torch.zeros(2, 3), torch.zeros(2, dtype=torch.long), gen(), num_classes=2), "shape"),
        (lambda: Mixing(3), "mixup_alpha"),
        (lambda: Mixing(3, mixup_alpha=1.0, prob=2.0), "prob"),
        (lambda: Mixing(3, mixup_alpha=1.0, mode="pair"), "mode"),
        (lambda: LabelSmoothing(3, 1.0), "label_smoothing"),
        (lambda: smooth_labels(torch.zeros(2, dtype=torch.long), 3, 1.0), "epsilon"),
        (lambda: soft_cross_entropy(torch.zeros(2, 3), torch.zeros(2, 2)), "logits' shape (2, 3)"),
        (lambda: mixup(torch.zeros(2, 3), torch.zeros(2, dtype=torch.long), None, num_classes=2), "generator"),
        (lambda: cutmix(torch.zeros(2, 1, 4, 4), torch.zeros(2, dtype=torch.long), 7, num_classes=2), "generator"),
        (lambda: Mixing(3, mixup_alpha=1.0)(torch.zeros(2, 3), torch.zeros(2, dtype=torch.long), None), "generator"),
        (
            lambda: mixup(torch.zeros(2, 3), torch.tensor([0, 12]), gen(), num_classes=10),
            "labels must be in 0..9 (num_classes = 10), got 12",
        ),
        (lambda: smooth_labels(torch.tensor([-1, 0]), 3, 0.1), "labels must be in 0..2 (num_classes = 3), got -1"),
        (lambda: smooth_labels(torch.rand(4), 3, 0.1), "labels must be class indices"),
        (lambda: smooth_labels(torch.zeros(4, 2), 3, 0.1), "soft targets must have 3 columns"),
        (lambda: one_hot(torch.zeros(2, dtype=torch.long), 0), "num_classes"),
        (
            lambda: mixup(torch.zeros(4, 3), torch.zeros(3, dtype=torch.long), gen(), num_classes=2),
            "mixup: x and y must hold one batch, as many labels as samples; got x of shape (4, 3) and y of shape (3,)",
        ),
        (
            lambda: cutmix(torch.zeros(4, 1, 6), torch.zeros(5, dtype=torch.long), gen(), num_classes=2),
            "cutmix: x and y must hold one batch",
        ),
        (
            lambda: Mixing(3, mixup_alpha=1.0, prob=0.0)(torch.zeros(4, 3), torch.zeros(2, dtype=torch.long), gen()),
            "Mixing: x and y must hold one batch",
        ),
        (
            lambda: mixup(torch.zeros(4, 3), [0, 1, 0, 1], gen(), num_classes=2),
            "mixup: y must be a torch.Tensor, got list",
        ),
        (lambda: mixup(torch.tensor(1.0), torch.zeros(1, dtype=torch.long), gen(), num_classes=2), "got x of shape ()"),
        (lambda: smooth_labels([0, 1], 3, 0.1), "one_hot: labels must be a torch.Tensor, got list"),
    ],
)
def test_bad_options(call, word):
    with pytest.raises((ValueError, TypeError)) as info:
        call()
    assert word in str(info.value)


def test_one_hot_takes_any_integer_labels():
    y = torch.tensor([2, 0, 1])
    want = torch.eye(3)[[2, 0, 1]]
    for dtype in (torch.int64, torch.int32, torch.uint8):
        assert torch.equal(one_hot(y.to(dtype), 3), want)
    soft = torch.full((3, 3), 1 / 3)
    assert one_hot(soft, 3) is soft


def test_mixup_refuses_integer_inputs():
    """λ xᵢ + (1 − λ) xⱼ is not an integer image: uint8 inputs were cast back (λ → 0, the
    batch merely permuted, targets wrong); now a TypeError naming mixup and the dtype."""
    x = torch.randint(0, 256, (4, 1, 6, 6), dtype=torch.uint8)
    with pytest.raises(TypeError, match=r"mixup needs floating-point inputs, got torch.uint8"):
        mixup(x, torch.tensor([0, 1, 2, 0]), gen(), num_classes=3)
    with pytest.raises(TypeError, match=r"mixup needs floating-point inputs"):
        Mixing(3, mixup_alpha=1.0)(x, torch.tensor([0, 1, 2, 0]), gen())


def test_cutmix_pastes_integer_images_and_gives_float_targets():
    """Pasting a box needs no arithmetic on pixels: uint8 images are mixed exactly as their float
    copies, and the soft targets are in the default float dtype (the kept area is a fraction)."""
    x = torch.randint(0, 256, (6, 1, 8, 8), dtype=torch.uint8, generator=gen(1))
    y = torch.tensor([0, 1, 2, 0, 1, 2])
    mixed, targets = cutmix(x, y, gen(2), num_classes=3, mode="elem")
    want_x, want_t = cutmix(x.float(), y, gen(2), num_classes=3, mode="elem")
    assert mixed.dtype == torch.uint8 and torch.equal(mixed.float(), want_x)
    assert targets.dtype == torch.get_default_dtype() and torch.equal(targets, want_t)
    kept, unmixed = Mixing(3, cutmix_alpha=1.0, prob=0.0)(x, y, gen())
    assert torch.equal(kept, x) and unmixed.dtype == torch.get_default_dtype()
