"""Batched label-preserving augmentations: properties that fail if the technique is wrong."""

import numpy as np
import pytest
import torch

from reglab.augment import cutout, erase, flip, rotate, scale, shift, translate


def gen(seed=0):
    return torch.Generator().manual_seed(seed)


SIGNALS = torch.randn(64, 1, 40, generator=gen(1))
IMAGES = torch.randn(32, 3, 12, 10, generator=gen(2))


@pytest.mark.parametrize("x", [SIGNALS, IMAGES], ids=["signals", "images"])
@pytest.mark.parametrize(
    "fn",
    [
        lambda x, g: flip(x, g),
        lambda x, g: shift(x, g, 3),
        lambda x, g: shift(x, g, 3, mode="circular"),
        lambda x, g: scale(x, g, 0.8, 1.2),
        lambda x, g: cutout(x, g, 4),
        lambda x, g: erase(x, g, p=1.0, count=2),
    ],
    ids=["flip", "shift", "shift-circular", "scale", "cutout", "erase"],
)
def test_shape_dtype_device_kept_and_seeded(x, fn):
    out = fn(x, gen(5))
    assert out.shape == x.shape and out.dtype == x.dtype and out.device == x.device
    assert torch.equal(out, fn(x, gen(5))), "same generator seed, same batch"
    assert not torch.equal(out, fn(x, gen(6))), "different seeds, different batches"
    assert not torch.equal(out, x)


@pytest.mark.parametrize(
    "fn",
    [
        lambda x, g: flip(x, g, p=1.0),
        lambda x, g: shift(x, g, 3),
        lambda x, g: rotate(x, g, 30),
        lambda x, g: scale(x, g, 0.8, 1.2),
        lambda x, g: cutout(x, g, 4),
        lambda x, g: erase(x, g, p=1.0),
    ],
    ids=["flip", "shift", "rotate", "scale", "cutout", "erase"],
)
def test_an_empty_batch_comes_back_empty(fn):
    out = fn(IMAGES[:0], gen(0))
    assert out.shape == IMAGES[:0].shape and out.dtype == IMAGES.dtype


def test_flip_is_its_own_inverse_and_respects_p():
    once = flip(IMAGES, gen(3), p=1.0)
    assert torch.equal(once, IMAGES.flip(-1)) and torch.equal(flip(once, gen(3), p=1.0), IMAGES)
    assert torch.equal(flip(IMAGES, gen(3), p=1.0, dim=-2), IMAGES.flip(-2))
    assert torch.equal(flip(IMAGES, gen(3), p=0.0), IMAGES)
    x = torch.randn(4000, 1, 8, generator=gen(4))
    flipped = (flip(x, gen(4), p=0.3) != x).flatten(1).any(1).float().mean()
    assert abs(float(flipped) - 0.3) < 0.03


@pytest.mark.parametrize("x", [SIGNALS, IMAGES], ids=["signals", "images"])
def test_shift_by_k_then_minus_k_restores_the_interior(x):
    m = 3
    offsets = [torch.randint(-m, m + 1, (len(x),), generator=gen(7)) for _ in x.shape[2:]]
    back = translate(translate(x, offsets), [-k for k in offsets])
    interior = (slice(None), slice(None)) + tuple(slice(m, size - m) for size in x.shape[2:])
    assert torch.equal(back[interior], x[interior])
    assert torch.equal(translate(translate(x, offsets, "circular"), [-k for k in offsets], "circular"), x)
    signal = torch.arange(10.0).reshape(1, 1, 10)
    assert translate(signal, [torch.tensor([2])]).flatten().tolist() == [
        0,
        0,
        0,
        1,
        2,
        3,
        4,
        5,
        6,
        7,
    ]  # out[j] = x[j - 2]
    assert translate(signal, [torch.tensor([-3])], "circular").flatten().tolist() == [3, 4, 5, 6, 7, 8, 9, 0, 1, 2]


@pytest.mark.parametrize("mode", ["zeros", "circular"])
@pytest.mark.parametrize("x", [SIGNALS, IMAGES], ids=["signals", "images"])
def test_translate_equals_a_per_sample_numpy_reference(x, mode):
    """Offsets up to beyond the size (all zeros, or a full turn and more)."""
    offsets = [torch.randint(-size - 2, size + 3, (len(x),), generator=gen(9)) for size in x.shape[2:]]
    out = translate(x, offsets, mode).numpy()
    for i, sample in enumerate(x.numpy()):
        expected = sample
        for axis, k in zip(range(1, sample.ndim), offsets):
            k = int(k[i])
            if mode == "circular":
                expected = np.roll(expected, k, axis=axis)
            else:  # out[j] = x[j - k] where 0 <= j - k < size, else 0
                size = expected.shape[axis]
                moved = np.zeros_like(expected)
                for j in range(size):
                    if 0 <= j - k < size:
                        index = [slice(None)] * sample.ndim
                        index[axis] = j
                        source = list(index)
                        source[axis] = j - k
                        moved[tuple(index)] = expected[tuple(source)]
                expected = moved
        np.testing.assert_array_equal(out[i], expected)


def test_shift_draws_offsets_in_range():
    x = torch.arange(40.0).expand(500, 1, 40).contiguous()
    out = shift(x, gen(12), max_shift=5, mode="circular")
    k = (-out[:, 0, 0]).remainder(40).long()  # out[0] = x[(0 - k) mod 40] = (-k) mod 40
    signed = torch.where(k >= 20, k - 40, k)
    assert set(signed.tolist()) == set(range(-5, 6))


def test_shift_zero_fill_counts():
    ones = torch.ones(500, 1, 30)
    out = shift(ones, gen(8), max_shift=4)
    zeros = (out == 0).sum(dim=(1, 2))
    assert int(zeros.max()) <= 4 and set(zeros.tolist()) == set(range(5))


def test_shift_moves_each_sample_with_probability_p():
    x = torch.arange(40.0).expand(4000, 1, 40).contiguous()
    assert torch.equal(shift(x, gen(13), max_shift=4, p=0.0), x)
    moved = (shift(x, gen(13), max_shift=4, p=0.3) != x).flatten(1).any(1).float().mean()
    assert abs(float(moved) - 0.3 * 8 / 9) < 0.03  # a chosen sample stays put when k = 0 (1 in 9)


def test_rotate_by_zero_degrees_and_right_angle():
    assert torch.allclose(rotate(IMAGES, gen(), degrees=0.0), IMAGES, atol=1e-6)
    square = torch.randn(8, 1, 9, 9, generator=gen(9))
    g = torch.Generator().manual_seed(0)
    out = rotate(square, g, degrees=90.0)
    g = torch.Generator().manual_seed(0)
    angles = -90 + 180 * torch.rand(8, generator=g)
    for i, a in enumerate(angles):
        if abs(abs(float(a)) - 90) < 0.5:
            assert torch.allclose(out[i], torch.rot90(square[i], 1 if a > 0 else -1, (1, 2)), atol=0.05)


def test_scale_one_is_identity():
    assert torch.allclose(scale(IMAGES, gen(), 1.0, 1.0), IMAGES, atol=1e-5)
    assert torch.allclose(scale(SIGNALS, gen(), 1.0, 1.0), SIGNALS, atol=1e-5)


def test_cutout_touches_only_its_clipped_box():
    x = torch.ones(300, 1, 10, 10)
    out = cutout(x, gen(10), size=4)
    for sample in out:
        rows = (sample[0] == 0).any(1).nonzero().flatten()
        cols = (sample[0] == 0).any(0).nonzero().flatten()
        box = torch.zeros(10, 10, dtype=torch.bool)
        box[rows.min() : rows.max() + 1, cols.min() : cols.max() + 1] = True
        assert torch.equal(sample[0] == 0, box), "erased pixels form one box"
        assert len(rows) <= 4 and len(cols) <= 4
    assert any(len((s[0] == 0).any(1).nonzero()) < 4 for s in out), "boxes are clipped at the border"


def test_erase_area_and_value():
    x = torch.ones(400, 1, 20, 20)
    out = erase(x, gen(11), p=1.0, count=1, area=(0.1, 0.1), aspect=(1.0, 1.0), value=-1.0)
    frac = (out == -1).float().mean(dim=(1, 2, 3))
    assert torch.allclose(frac, torch.full_like(frac, 0.09), atol=0.02)  # round(sqrt(40)) = 6: 36/400
    assert set(out.unique().tolist()) == {-1.0, 1.0}


@pytest.mark.parametrize(
    "call, word",
    [
        (lambda: flip(IMAGES, gen(), p=1.5), "p"),
        (lambda: shift(SIGNALS, gen(), -1), "max_shift"),
        (lambda: shift(SIGNALS, gen(), 2, mode="wrap"), "mode"),
        (lambda: rotate(SIGNALS, gen()), "(N, C, H, W)"),
        (lambda: flip(torch.zeros(4, 10), gen()), "shape"),
        (lambda: erase(IMAGES, gen(), area=(0.0, 0.5)), "area[0]"),
        (lambda: erase(IMAGES, gen(), area=(0.3, 1.5)), "area[1]"),
        (lambda: scale(IMAGES, gen(), 0.0, 1.0), "low"),
        (lambda: cutout(IMAGES, gen(), 0), "size"),
        (lambda: shift(IMAGES, gen(), 10), "max_shift = 10 must be smaller than the samples' side (12x10)"),
        (
            lambda: shift(SIGNALS, gen(), 40, mode="circular"),
            "max_shift = 40 must be smaller than the samples' side (40)",
        ),
        (lambda: cutout(SIGNALS, gen(), 41), "size = 41 is larger than the samples (40)"),
        (lambda: cutout(IMAGES, gen(), 3, value=float("nan")), "value"),
        (lambda: erase(IMAGES, gen(), value=float("inf")), "value"),
        (lambda: flip(IMAGES, None), "generator must be a torch.Generator"),
        (lambda: shift(SIGNALS, 3), "generator must be a torch.Generator"),
        (lambda: rotate(IMAGES, 0), "generator must be a torch.Generator"),
        (lambda: scale(IMAGES, None), "generator must be a torch.Generator"),
        (lambda: cutout(IMAGES, None), "generator must be a torch.Generator"),
        (lambda: erase(IMAGES, None), "generator must be a torch.Generator"),
        *[
            (
                lambda fn=fn: fn(IMAGES.numpy(), gen()),
                f"{fn.__name__}: x must be a torch.Tensor, got ndarray; torch.as_tensor(x) converts a NumPy array",
            )
            for fn in (flip, shift, rotate, scale, cutout, erase)
        ],
        (lambda: shift(SIGNALS.tolist(), gen()), "shift: x must be a torch.Tensor, got list"),
    ],
)
def test_bad_options(call, word):
    with pytest.raises((ValueError, TypeError)) as info:
        call()
    assert word in str(info.value)


UINT8_IMAGES = torch.randint(0, 256, (8, 1, 10, 10), dtype=torch.uint8, generator=gen(3))


@pytest.mark.parametrize(
    "fn",
    [
        lambda x, g: flip(x, g, p=1.0),
        lambda x, g: shift(x, g, 3),
        lambda x, g: cutout(x, g, 4),
        lambda x, g: erase(x, g, p=1.0, value=7),
    ],
    ids=["flip", "shift", "cutout", "erase"],
)
def test_moving_and_erasing_keep_integer_images_exact(fn):
    """What only moves or overwrites pixels works on uint8 images as on floats: the same
    pixels end in the same places."""
    out = fn(UINT8_IMAGES, gen(4))
    want = fn(UINT8_IMAGES.double(), gen(4))
    assert out.dtype == torch.uint8 and torch.equal(out.double(), want)


@pytest.mark.parametrize(
    "fn, name",
    [(lambda x, g: rotate(x, g, 10), "rotate"), (lambda x, g: scale(x, g), "scale")],
)
def test_interpolating_needs_floating_point_images(fn, name):
    """Bilinear resampling makes values between pixels: an integer image is refused with a
    TypeError naming the function and the dtype (not grid_sample's 'theta' message)."""
    with pytest.raises(TypeError, match=rf"{name} needs floating-point inputs, got torch.uint8"):
        fn(UINT8_IMAGES, gen(0))


def test_the_largest_shift_and_cutout_still_run():
    """At the bounds of the checks above: a shift one less than the side, a box as large as the
    largest side (clipped at the border)."""
    assert shift(IMAGES, gen(), 9).shape == IMAGES.shape
    assert cutout(IMAGES, gen(), 12).shape == IMAGES.shape and cutout(SIGNALS, gen(), 40).shape == SIGNALS.shape
