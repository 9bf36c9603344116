"""Data sets as train / validation / test tensors, checked before the first step.

Every data set is small enough to live on the training device whole, so batches are index
gathers, not a DataLoader. Inputs keep a channel axis: signals are ``(N, 1, L)``, images
``(N, 1, H, W)``, tabular data ``(N, F)``.

- ``mnist1d``: 4,000 train / 1,000 test signals of length 40, generated offline by the
  ``mnist1d`` package with its standard arguments and cached under ``$REGLAB_CACHE``
  (default ``~/.cache/reglab``); never downloaded.
- ``digits``: scikit-learn's 8x8 digits (1,797 images, scaled to [0, 1]).
- ``diabetes``: scikit-learn's diabetes regression set (442 patients, 10 features, disease
  progression after one year); features and target standardized to mean 0, variance 1.
- ``fashion-mnist``: IDX files, by default where Debian's ``dataset-fashion-mnist`` puts them.
- ``npz`` (arrays ``x``, ``y`` and optionally ``x_test``, ``y_test``) and ``csv`` (a header
  row, numeric feature columns and a label column) for your own data. Labels are integers
  0..K-1, or class names, numbered in sorted order and kept as ``Data.classes``.

Classification data have labels ``(N,)`` int64. Regression data (``load_data(...,
regression=True)``, a recipe whose ``training.loss`` is ``mse``, ``mae`` or ``huber``) have targets
``(N, D)`` float32: a 1-D target array becomes ``(N, 1)``, so that it matches the model's output.

The validation set is carved from the training set by the run's seed; data without a test
split get one carved with a fixed seed, so the test set is the same for every seed.
``data.train_size = N`` then keeps N of the remaining training samples (a random subset that
grows by nesting as N grows, for one seed), leaving the validation and test sets as they are:
how overfitting depends on the amount of data (TECHNIQUES.md section 11).
"""

from __future__ import annotations

import functools
import importlib.metadata
import os
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from reglab._checks import check_bool, check_int
from reglab._files import atomic_write
from reglab.data.files import REAL_HINT, csv_file, npz_file, read_idx
from reglab.data.tensors import Data, as_tensors, check_arrays
from reglab.errors import MissingFileError, ReglabError, ReglabTypeError
from reglab.registry import Registry

FASHION_MNIST_DIR = Path("/usr/share/datasets/fashion-mnist")
_TEST_SPLIT_SEED = 0  # fixed: the held-out test set must not change with the run's seed
_TASK_HINT = "training.loss is cross_entropy for class labels, mse, mae or huber for real-valued targets"
VALID_FRACTION = 0.2  # default share of the training set held out for validation
TEST_FRACTION = 0.2  # default test share, for data without a test split of their own
LABEL_COLUMN = "label"  # default label column of a CSV file


def load_data(config: Any | str, seed: int = 0, regression: bool | None = None) -> Data:
    """Load the data set ``config.name``, check it, and split it by ``seed``.

    ``config`` is a recipe's data section (``recipe.data``), or a data set's name or
    ``.npz``/``.csv`` path (split with the defaults then). ``regression=True`` reads real-valued targets
    (``diabetes``, or a ``.npz``/``.csv`` whose label column holds numbers) instead of class
    labels; ``None`` takes the data set's own kind (class labels for a file).

    >>> data = load_data("digits", seed=0)  # doctest: +SKIP
    """
    config = _source(config)
    check_int("seed", seed, low=0)
    dataset = DATASETS[DATASETS.check("data.name", config.name)]
    if regression is None:
        regression = dataset.targets == "real"
    check_bool("regression", regression)
    if dataset.targets != "either" and regression != (dataset.targets == "real"):
        kind = "a regression" if dataset.targets == "real" else "a classification"
        raise ReglabError(f"data.name = {config.name!r} is {kind} data set; " + _TASK_HINT)
    x, y, x_test, y_test, *named = dataset.load(config, regression)
    x, y = _as_tensors(x, y, regression)
    if x_test is not None:
        x_test, y_test = _as_tensors(x_test, y_test, regression)
    classes = tuple(named[0]) if named else ()
    where = config.path or config.name
    check_arrays(x, y, "training data")
    if x_test is None:
        n = len(x)
        x, y, x_test, y_test = _carve(x, y, config.test_fraction, _TEST_SPLIT_SEED)
        if len(x) < 2 or len(x_test) == 0:
            raise ReglabError(
                f"{where}: {n} sample{'s' if n != 1 else ''} cannot be split into training, validation and test "
                f"sets (data.test_fraction = {config.test_fraction}, data.valid_fraction = {config.valid_fraction}); "
                "give more samples"
            )
    check_arrays(x_test, y_test, "test data")
    _warn_unscaled(where, x)
    if x_test.shape[1:] != x.shape[1:]:
        raise ReglabError(
            f"test inputs have shape {tuple(x_test.shape[1:])} per sample, training inputs {tuple(x.shape[1:])}"
        )
    if regression:
        num_classes = 0
        if y_test.shape[1:] != y.shape[1:]:
            raise ReglabError(f"test targets have {y_test.shape[1]} columns, training targets {y.shape[1]}")
    else:
        num_classes = len(classes) if classes else _class_count(where, y, config.num_classes)
        if num_classes < 2:
            only = repr(classes[0]) if classes else "0"
            raise ReglabError(f"the labels hold one class ({only}); a classifier needs at least 2" + REAL_HINT)
        if int(y_test.max()) >= num_classes:
            raise ReglabError(f"test labels go up to {int(y_test.max())} but training labels only to {num_classes - 1}")
    x_train, y_train, x_valid, y_valid = _carve(x, y, config.valid_fraction, seed)
    for part, xs in (("training", x_train), ("validation", x_valid)):
        if len(xs) == 0:
            raise ReglabError(
                f"the {part} split is empty: {len(x)} samples, data.valid_fraction = {config.valid_fraction}"
            )
    if config.train_size:  # less data (TECHNIQUES.md section 11): the split is in random order: a random subset
        if config.train_size > len(x_train):
            raise ReglabError(
                f"data.train_size = {config.train_size}, but the training split holds {len(x_train)} samples"
            )
        x_train, y_train = x_train[: config.train_size], y_train[: config.train_size]
    if config.noise_features:
        x_train, x_valid, x_test = _with_noise_features(config.noise_features, seed, x_train, x_valid, x_test)
    if config.outliers:
        if not regression:
            raise ReglabError(f"data.outliers = {config.outliers} moves regression targets; " + _TASK_HINT)
        y_train = with_outliers(y_train, config.outliers, config.outlier_size, seed)
    return Data(config.name, x_train, y_train, x_valid, y_valid, x_test, y_test, num_classes, classes)


@dataclass(frozen=True)
class Source:
    """Where data come from and how they are split: the fields ``load_data`` reads from its
    ``config`` (a recipe's data section has them all; this is what a name or a path becomes)."""

    name: str
    path: str = ""
    valid_fraction: float = VALID_FRACTION
    test_fraction: float = TEST_FRACTION
    train_size: int = 0
    label_column: str = LABEL_COLUMN
    num_classes: int = 0  # 0: max label + 1
    noise_features: int = 0  # pure-noise inputs appended to each sample
    outliers: float = 0.0  # regression: fraction of training targets moved by outlier_size std
    outlier_size: float = 10.0


def _source(config: object) -> Any:
    """``load_data``'s first argument: a recipe's data section (any object with its fields), or a
    data set's name or ``.npz``/``.csv`` path."""
    if isinstance(config, (str, Path)):
        suffix = Path(config).suffix.lower()
        if suffix[1:] in FILE_FORMATS:
            return Source(name=suffix[1:], path=str(config))
        return Source(name=str(config))
    if all(hasattr(config, f) for f in Source.__dataclass_fields__):
        return config
    raise ReglabTypeError(
        "load_data takes a DataConfig (recipe.data), a data set's name or a .npz/.csv path; "
        f"got {type(config).__name__}"
    )


LARGE_INPUT = 1e4  # inputs beyond this magnitude: unscaled (pixels 0..255 are not; raw sums of money are)


def _warn_unscaled(where: str, x: torch.Tensor) -> None:
    """Warn about inputs so large that the first steps would be huge (they train, badly)."""
    top = float(x.abs().max()) if x.numel() else 0.0
    if top > LARGE_INPUT:
        warnings.warn(
            f"{where}: inputs reach {top:.3g} in magnitude (above {LARGE_INPUT:g}), which makes the first steps huge; "
            "standardize each feature (subtract its mean, divide by its standard deviation)",
            stacklevel=3,
        )


def _class_count(where: str, y: torch.Tensor, confirmed: int) -> int:
    """K for integer labels 0..K-1: ``max + 1``, refused when some class in between has no
    training sample (a label typo builds a model with classes it never sees), unless the user
    confirmed K with ``data.num_classes``."""
    top = int(y.max()) + 1  # a named class may lie in the test split only
    if confirmed:
        if top > confirmed:
            raise ReglabError(f"{where}: labels go up to {top - 1}, but data.num_classes = {confirmed}")
        return confirmed
    missing = sorted(set(range(top)) - set(torch.unique(y).tolist()))
    if missing:
        shown = ", ".join(map(str, missing[:8])) + (", ..." if len(missing) > 8 else "")
        raise ReglabError(
            f"{where}: labels {shown} of 0..{top - 1} have no training samples ({len(missing)} of {top} classes); "
            f"relabel the classes 0..K-1, or confirm K = {top} with --classes {top} (data.num_classes)"
        )
    return top


def _with_noise_features(n: int, seed: int, *parts: torch.Tensor) -> list[torch.Tensor]:
    """Append ``n`` pure-noise inputs to every sample of each part: Gaussian, with the standard
    deviation of the training inputs, so that a model cannot tell them apart by scale; along the
    last axis of a signal ``(C, L) -> (C, L + n)`` or a row of features ``(F,) -> (F + n,)``. What a
    feature-selecting penalty (L1) should leave without weight (TECHNIQUES.md section 4)."""
    if parts[0].dim() > 3:
        raise ReglabError(
            f"data.noise_features appends inputs to signals or rows of features; samples here are images of shape "
            f"{tuple(parts[0].shape[1:])}"
        )
    scale = float(parts[0].double().std())
    g = torch.Generator().manual_seed(seed + 1_000_003)  # the run's seed, apart from the split's stream
    return [
        torch.cat([x, scale * torch.randn(*x.shape[:-1], n, generator=g, dtype=torch.float64).to(x.dtype)], dim=-1)
        for x in parts
    ]


def with_outliers(y: torch.Tensor, fraction: float, size: float, seed: int) -> torch.Tensor:
    """Regression targets with ``round(fraction · N)`` of them, chosen by ``seed``, moved up by
    ``size`` standard deviations of their column: gross errors in the labels, all on one side,
    which pull a squared-error fit (its constant minimizer is the mean) and barely move an
    absolute-error one (the median; TECHNIQUES.md section 12)."""
    count = round(fraction * len(y))
    chosen = torch.randperm(len(y), generator=torch.Generator().manual_seed(seed + 2_000_003))[:count]
    out = y.clone()
    out[chosen] += size * y.double().std(0).to(y.dtype)
    return out


def _carve(x, y, fraction: float, seed: int):
    """Split off ``fraction`` of the samples, chosen by ``seed``: returns (x_rest, y_rest, x_part, y_part)."""
    n_part = max(1, round(len(x) * fraction))
    perm = torch.randperm(len(x), generator=torch.Generator().manual_seed(seed))
    rest, part = perm[n_part:], perm[:n_part]
    return x[rest], y[rest], x[part], y[part]


# -- loaders: (config, regression) -> (x, y, x_test, y_test[, classes]), test None when the set has no test split


def cache_dir() -> Path:
    root = os.environ.get("REGLAB_CACHE") or Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "reglab"
    return Path(root)


def _mnist1d(config: Any, regression: bool):
    # Keyed by the package's version, which fixes its standard arguments and its generator, so
    # that a cached set is read without importing the package (which imports matplotlib).
    path = cache_dir() / f"mnist1d-{importlib.metadata.version('mnist1d')}.npz"
    if path.exists():
        with np.load(path) as d:
            arrays = {k: d[k] for k in ("x", "y", "x_test", "y_test")}
    else:
        from mnist1d.data import get_dataset_args, make_dataset

        made = make_dataset(get_dataset_args())
        arrays = {k: made[k] for k in ("x", "y", "x_test", "y_test")}
        try:
            atomic_write(path, lambda f: np.savez(f, **arrays))
        except OSError as e:  # a read-only home, say: train on it all the same
            warnings.warn(
                f"cannot cache MNIST-1D in {path.parent} ({e.strerror or e}); it was generated in memory, and will be"
                " again in every process: set REGLAB_CACHE to a writable folder to keep it",
                stacklevel=2,
            )
    x, y = as_tensors(arrays["x"], arrays["y"])
    x_test, y_test = as_tensors(arrays["x_test"], arrays["y_test"])
    return x[:, None], y, x_test[:, None], y_test


@functools.lru_cache(maxsize=1)
def _digits_set() -> Any:
    """scikit-learn's bundled digits, read once per process (each read parses a gzipped CSV:
    0.1 s, paid by every trial of a study on digits)."""
    from sklearn.datasets import load_digits

    return load_digits()


def _digits(config: Any, regression: bool):
    d = _digits_set()
    x, y = as_tensors(d.images / 16.0, d.target)  # new arrays: the cached set is never handed out
    return x[:, None], y, None, None


def _diabetes(config: Any, regression: bool):
    from sklearn.datasets import load_diabetes

    x, y = load_diabetes(return_X_y=True, scaled=False)
    # z-scores over the whole set (fixed, seed-free): the MLP's default init and lr then fit
    x, y = (x - x.mean(0)) / x.std(0), (y - y.mean()) / y.std()
    return *as_tensors(x, y, regression=True), None, None


def _fashion_mnist(config: Any, regression: bool):
    folder = Path(config.path) if config.path else FASHION_MNIST_DIR
    names = ("train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")
    files = []
    for name in names:
        found = [folder / f for f in (name, name + ".gz") if (folder / f).exists()]
        if not found:
            raise MissingFileError(
                f"Fashion-MNIST file {name}[.gz] not found in {folder}: install Debian's package "
                f"(apt-get install dataset-fashion-mnist) or pass --data-dir with the four IDX files"
            )
        files.append(found[0])
    x, y, x_test, y_test = (read_idx(f) for f in files)
    x, y = as_tensors(x / 255.0, y)
    x_test, y_test = as_tensors(x_test / 255.0, y_test)
    return x[:, None], y, x_test[:, None], y_test


def _as_tensors(x: Any, y: Any, regression: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """A loader's arrays as tensors (a registered loader may return NumPy arrays)."""
    if isinstance(x, torch.Tensor) and isinstance(y, torch.Tensor):
        return x, y
    return as_tensors(np.asarray(x), np.asarray(y), regression)


@dataclass(frozen=True)
class Dataset:
    """A data set's loader and the kind of targets it has."""

    load: Callable[[Any, bool], tuple]  # (config, regression) -> (x, y, x_test, y_test[, classes]); test None: carved
    targets: str = "classes"  # "classes" (class labels), "real" (regression targets) or "either" (a file)


FILE_FORMATS = ("npz", "csv")  # data sets read from the user's file at data.path

DATASETS: Registry[Dataset] = Registry(
    "data set",
    {
        "mnist1d": Dataset(_mnist1d),
        "digits": Dataset(_digits),
        "fashion-mnist": Dataset(_fashion_mnist),
        "diabetes": Dataset(_diabetes, "real"),
        "npz": Dataset(npz_file, "either"),
        "csv": Dataset(csv_file, "either"),
    },
    open=True,
    wrap=lambda load: Dataset(load, "either"),  # named by import path: the loader reads the regression flag
    arity=2,
    arguments="config, regression",
)


def register_dataset(
    name: str, load: Callable[[Any, bool], tuple], *, targets: str = "classes", replace: bool = False
) -> Callable[[Any, bool], tuple]:
    """Make ``load(config, regression)`` a data set: a recipe's ``data.name = name`` then loads
    it. ``load`` returns ``(x, y, x_test, y_test)`` (arrays or tensors; ``x_test, y_test = None,
    None`` to have a test split carved by ``data.test_fraction``), optionally followed by the
    class names; ``config`` is the recipe's data section (``config.path``, ...). ``targets`` is
    ``"classes"``, ``"real"`` (a regression) or ``"either"``. Returns ``load``."""
    if not callable(load):
        raise ReglabTypeError(f"register_dataset: load must be a function (config, regression); got {load!r}")
    if targets not in ("classes", "real", "either"):
        raise ReglabError(f"register_dataset: targets must be classes, real or either; got {targets!r}")
    DATASETS.register(name, Dataset(load, targets), replace=replace)
    return load
