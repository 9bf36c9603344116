"""The teaching figures' data: the augmentation study's gallery shows the same samples under
each transform, as the transform leaves them."""

import numpy as np
import pytest

from reglab.lab.study import teaching
from reglab.lab.study.chapters import STUDIES
from reglab.lab.study.chapters.augmentation import IMAGE_ARMS, SIGNAL_ARMS


@pytest.fixture(scope="module")
def gallery():
    """The gallery's figure, caught before it becomes a PNG: its rows of 8 panels by label."""
    caught = []
    saved = teaching._png
    teaching._png = lambda fig: caught.append(fig) or b""
    try:
        teaching.gallery_png(STUDIES["augmentation"].base_recipe().data, IMAGE_ARMS, SIGNAL_ARMS)
    finally:
        teaching._png = saved
    rows = np.array(caught[0].axes).reshape(-1, 8)
    return {row[0].get_ylabel(): row for row in rows}


def _images(row):
    return [np.asarray(ax.images[0].get_array()) for ax in row]


def test_one_row_per_transform_of_the_inputs(gallery):
    def touches_inputs(changes):  # weight noise and label smoothing leave the samples as they are
        return not any(k in changes for k in ("regularization.weight_noise", "mixing.label_smoothing"))

    images = [a for a, spec in IMAGE_ARMS.items() if a != "baseline" and touches_inputs(spec.changes)]
    signals = [a for a, spec in SIGNAL_ARMS.items() if spec.versus != a and touches_inputs(spec.changes)]
    assert list(gallery) == ["original images", *images, "original signals", *signals]
    assert len(images) == 9 and len(signals) == 5


def test_flip_shows_each_sample_as_it_is_or_mirrored(gallery):
    mirrored = []
    for original, shown in zip(_images(gallery["original images"]), _images(gallery["flip"])):
        assert np.array_equal(shown, original) or np.array_equal(shown, original[:, ::-1])
        mirrored.append(not np.array_equal(shown, original))
    assert any(mirrored) and not all(mirrored)  # p = 0.5 over 8 samples (seed 0)


def test_cutout_zeroes_one_3x3_box_of_each_sample(gallery):
    for original, shown in zip(_images(gallery["original images"]), _images(gallery["cutout"])):
        changed = np.argwhere(shown != original)
        assert (shown[shown != original] == 0).all()
        if len(changed):  # a box over blank pixels changes nothing
            assert (changed.max(0) - changed.min(0) <= 2).all()


def test_signal_rows_plot_the_signals_themselves(gallery):
    originals = [ax.lines[0].get_ydata() for ax in gallery["original signals"]]
    noisy = [ax.lines[0].get_ydata() for ax in gallery["1d-input-noise"]]
    for a, b in zip(originals, noisy):
        assert a.shape == b.shape and 0 < np.abs(b - a).std() < 1  # the signal plus noise of a small σ
