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
regression=True)``, a recipe whose ``training.loss`` is ``mse`` or ``mae``) have targets
``(N, D)`` float32: a 1-D target array becomes ``(N, 1)``, so that it matches the model's output.

The validation set is carved from the training set by the run's seed; data without a test
split get one carved with a fixed seed, so the test set is the same for every seed.
``data.train_size = N`` then keeps N of the remaining training samples (a random subset that
grows by nesting as N grows, for one seed), leaving the validation and test sets as they are:
how overfitting depends on the amount of data (TECHNIQUES.md section 11).
"""

from __future__ import annotations

import contextlib
import csv
import gzip
import importlib.metadata
import os
import struct
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch

from reglab._checks import check_bool, check_int

if TYPE_CHECKING:
    from reglab.recipe import DataConfig

FASHION_MNIST_DIR = Path("/usr/share/datasets/fashion-mnist")
_TEST_SPLIT_SEED = 0  # fixed: the held-out test set must not change with the run's seed
REGRESSION_SETS = ("diabetes",)  # built-in sets with real-valued targets; npz and csv can be either
_TASK_HINT = "training.loss is cross_entropy for class labels, mse or mae for real-valued targets"


@dataclass(frozen=True)
class Data:
    """Train / validation / test tensors of one data set (inputs float32; labels int64, or
    regression targets float32 ``(N, D)``)."""

    name: str
    x_train: torch.Tensor
    y_train: torch.Tensor
    x_valid: torch.Tensor
    y_valid: torch.Tensor
    x_test: torch.Tensor
    y_test: torch.Tensor
    num_classes: int  # K; 0 for regression data
    classes: tuple[str, ...] = ()  # the class names, when the data named them (label i is classes[i])

    def __post_init__(self) -> None:
        """The checks ``load_data`` makes, for Data made by hand too: before any training step.
        Integer labels of another dtype (int32, uint8, ...) become int64, as the losses need."""
        for field in ("x_train", "y_train", "x_valid", "y_valid", "x_test", "y_test"):
            value = getattr(self, field)
            if not isinstance(value, torch.Tensor):
                hint = (
                    "; torch.as_tensor converts a NumPy array (inputs as float32: dtype=torch.float32)"
                    if type(value).__module__ == "numpy"
                    else ""
                )
                raise TypeError(f"Data: {field} must be a torch.Tensor, got {type(value).__name__}{hint}")
            if field.startswith("y") and not value.is_floating_point() and value.dtype not in (torch.int64, torch.bool):
                object.__setattr__(self, field, value.long())
        parts = {
            "training": (self.x_train, self.y_train),
            "validation": (self.x_valid, self.y_valid),
            "test": (self.x_test, self.y_test),
        }
        for where, (x, y) in parts.items():
            check_arrays(x, y, f"{where} data")
            if x.shape[1:] != self.x_train.shape[1:]:
                raise ValueError(
                    f"{where} inputs have shape {tuple(x.shape[1:])} per sample, training inputs {tuple(self.x_train.shape[1:])}"
                )
            if y.is_floating_point() != self.regression or y.shape[1:] != self.y_train.shape[1:]:
                kind = "targets" if y.is_floating_point() else "labels"
                base = "targets" if self.regression else "labels"
                raise ValueError(
                    f"{where} {kind} are {y.dtype} of shape {tuple(y.shape[1:])} per sample, "
                    f"training {base} {self.y_train.dtype} of shape {tuple(self.y_train.shape[1:])}"
                )
        if self.regression:
            return
        check_int("num_classes", self.num_classes, low=2)
        for where, (_, y) in parts.items():
            if int(y.max()) >= self.num_classes:
                raise ValueError(
                    f"{where} data: labels must be in 0..{self.num_classes - 1} (num_classes = {self.num_classes}), found {int(y.max())}"
                )

    @property
    def input_shape(self) -> tuple[int, ...]:
        return tuple(self.x_train.shape[1:])

    @property
    def regression(self) -> bool:
        return self.y_train.is_floating_point()

    @property
    def num_outputs(self) -> int:
        """The model's output size: K logits, or the D regression targets."""
        return self.y_train.shape[1] if self.regression else self.num_classes

    def to(self, device: torch.device | str) -> Data:
        moved = {k: v.to(device) for k, v in vars(self).items() if isinstance(v, torch.Tensor)}
        return Data(name=self.name, num_classes=self.num_classes, classes=self.classes, **moved)


def load_data(config: DataConfig | str, seed: int = 0, regression: bool | None = None) -> Data:
    """Load the data set ``config.name``, check it, and split it by ``seed``.

    ``config`` is a recipe's ``DataConfig``, or a data set's name or ``.npz``/``.csv`` path
    (the ``DataConfig`` defaults otherwise). ``regression=True`` reads real-valued targets
    (``diabetes``, or a ``.npz``/``.csv`` whose label column holds numbers) instead of class
    labels; ``None`` takes the data set's own kind (class labels for a file).

    >>> data = load_data("digits", seed=0)  # doctest: +SKIP
    """
    config = _data_config(config)
    check_int("seed", seed, low=0)
    if regression is None:
        regression = config.name in REGRESSION_SETS
    check_bool("regression", regression)
    if regression != (config.name in REGRESSION_SETS) and config.name not in ("npz", "csv"):
        kind = "a regression" if config.name in REGRESSION_SETS else "a classification"
        raise ValueError(f"data.name = {config.name!r} is {kind} data set; " + _TASK_HINT)
    x, y, x_test, y_test, *named = _LOADERS[config.name](config, regression)
    classes = tuple(named[0]) if named else ()
    check_arrays(x, y, "training data")
    if x_test is None:
        x, y, x_test, y_test = _carve(x, y, config.test_fraction, _TEST_SPLIT_SEED)
    check_arrays(x_test, y_test, "test data")
    if x_test.shape[1:] != x.shape[1:]:
        raise ValueError(
            f"test inputs have shape {tuple(x_test.shape[1:])} per sample, training inputs {tuple(x.shape[1:])}"
        )
    if regression:
        num_classes = 0
        if y_test.shape[1:] != y.shape[1:]:
            raise ValueError(f"test targets have {y_test.shape[1]} columns, training targets {y.shape[1]}")
    else:
        num_classes = len(classes) if classes else int(y.max()) + 1  # a named class may lie in the test split only
        if num_classes < 2:
            only = repr(classes[0]) if classes else "0"
            raise ValueError(f"the labels hold one class ({only}); a classifier needs at least 2" + _REAL_HINT)
        if int(y_test.max()) >= num_classes:
            raise ValueError(f"test labels go up to {int(y_test.max())} but training labels only to {num_classes - 1}")
    x_train, y_train, x_valid, y_valid = _carve(x, y, config.valid_fraction, seed)
    for part, xs in (("training", x_train), ("validation", x_valid)):
        if len(xs) == 0:
            raise ValueError(
                f"the {part} split is empty: {len(x)} samples, data.valid_fraction = {config.valid_fraction}"
            )
    if (
        config.train_size
    ):  # less data (TECHNIQUES.md section 11): the split is in random order, so this is a random subset
        if config.train_size > len(x_train):
            raise ValueError(
                f"data.train_size = {config.train_size}, but the training split holds {len(x_train)} samples"
            )
        x_train, y_train = x_train[: config.train_size], y_train[: config.train_size]
    return Data(config.name, x_train, y_train, x_valid, y_valid, x_test, y_test, num_classes, classes)


def check_arrays(x: torch.Tensor, y: torch.Tensor, where: str) -> None:
    """Raise ``ValueError`` for data that would break or silently spoil training: class
    labels ``(N,)`` (integers) or regression targets ``(N, D)`` (floating point)."""
    if x.ndim < 2:
        raise ValueError(
            f"{where}: inputs must have shape (N, ...) with at least one feature axis, got {tuple(x.shape)}"
        )
    regression = torch.is_floating_point(y)
    if regression and y.ndim != 2:
        raise ValueError(
            f"{where}: labels must be integers 0..K-1 of shape (N,), or regression targets of shape (N, D); "
            f"got {y.dtype} of shape {tuple(y.shape)}"
        )
    if not regression and y.ndim != 1:
        raise ValueError(f"{where}: labels must have shape (N,), got {tuple(y.shape)}")
    if len(x) != len(y):
        raise ValueError(f"{where}: {len(x)} inputs but {len(y)} labels")
    if len(x) == 0:
        raise ValueError(f"{where}: no samples")
    if not torch.is_floating_point(x):
        raise ValueError(f"{where}: inputs must be floating point, got {x.dtype}")
    bad = ~torch.isfinite(x)
    if bad.any():
        row = int(bad.reshape(len(x), -1).any(1).nonzero()[0])
        raise ValueError(f"{where}: {int(bad.sum())} NaN/Inf input values (first in sample {row})")
    if regression:
        bad = ~torch.isfinite(y)
        if bad.any():
            raise ValueError(
                f"{where}: {int(bad.sum())} NaN/Inf targets (first in sample {int(bad.any(1).nonzero()[0])})"
            )
        return
    if y.dtype == torch.bool:
        raise ValueError(f"{where}: labels must be integers 0..K-1, got dtype {y.dtype}")
    if int(y.min()) < 0:
        raise ValueError(f"{where}: labels must be in 0..K-1, found {int(y.min())}")


def _data_config(config: object) -> DataConfig:
    """``load_data``'s first argument as a DataConfig: a name or a ``.npz``/``.csv`` path too."""
    from reglab.recipe import DataConfig

    if isinstance(config, DataConfig):
        return config
    if isinstance(config, (str, Path)):
        suffix = Path(config).suffix.lower()
        return (
            DataConfig(name=suffix[1:], path=str(config))
            if suffix in (".npz", ".csv")
            else DataConfig(name=str(config))
        )
    raise TypeError(
        f"load_data takes a DataConfig (recipe.data), a data set's name or a .npz/.csv path; got {type(config).__name__}"
    )


def _carve(x, y, fraction: float, seed: int):
    """Split off ``fraction`` of the samples, chosen by ``seed``: returns (x_rest, y_rest, x_part, y_part)."""
    n_part = max(1, round(len(x) * fraction))
    perm = torch.randperm(len(x), generator=torch.Generator().manual_seed(seed))
    rest, part = perm[n_part:], perm[:n_part]
    return x[rest], y[rest], x[part], y[part]


def _tensors(x: np.ndarray, y: np.ndarray, regression: bool = False):
    """float32 inputs; int64 labels, or float32 targets as (N, D)."""
    if regression:
        y = np.array(y, dtype=np.float32)
        return torch.from_numpy(np.array(x, dtype=np.float32)), torch.from_numpy(y.reshape(-1, 1) if y.ndim == 1 else y)
    return torch.from_numpy(np.array(x, dtype=np.float32)), torch.from_numpy(np.array(y, dtype=np.int64))


# -- loaders: (config, regression) -> (x, y, x_test, y_test[, classes]), test None when the set has no test split


def cache_dir() -> Path:
    root = os.environ.get("REGLAB_CACHE") or Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "reglab"
    return Path(root)


def _mnist1d(config: DataConfig, regression: bool):
    # Keyed by the package's version, which fixes its standard arguments and its generator, so
    # that a cached set is read without importing the package (~1.6 s: it imports requests,
    # scipy.interpolate and matplotlib.pyplot).
    path = cache_dir() / f"mnist1d-{importlib.metadata.version('mnist1d')}.npz"
    if path.exists():
        with np.load(path) as d:
            arrays = {k: d[k] for k in ("x", "y", "x_test", "y_test")}
    else:
        from mnist1d.data import get_dataset_args, make_dataset

        made = make_dataset(get_dataset_args())
        arrays = {k: made[k] for k in ("x", "y", "x_test", "y_test")}
        tmp = path.with_suffix(f".{os.getpid()}.tmp.npz")
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            np.savez(tmp, **arrays)
            os.replace(tmp, path)
        except OSError as e:  # a read-only home, say: train on it all the same
            with contextlib.suppress(OSError):  # a partial file, if any
                tmp.unlink()
            warnings.warn(
                f"cannot cache MNIST-1D in {path.parent} ({e.strerror or e}); it was generated in memory, and will be"
                " again in every process: set REGLAB_CACHE to a writable folder to keep it",
                stacklevel=2,
            )
    x, y = _tensors(arrays["x"], arrays["y"])
    x_test, y_test = _tensors(arrays["x_test"], arrays["y_test"])
    return x[:, None], y, x_test[:, None], y_test


def _digits(config: DataConfig, regression: bool):
    from sklearn.datasets import load_digits

    d = load_digits()
    x, y = _tensors(d.images / 16.0, d.target)
    return x[:, None], y, None, None


def _diabetes(config: DataConfig, regression: bool):
    from sklearn.datasets import load_diabetes

    x, y = load_diabetes(return_X_y=True, scaled=False)
    # z-scores over the whole set (fixed, seed-free): the MLP's default init and lr then fit
    x, y = (x - x.mean(0)) / x.std(0), (y - y.mean()) / y.std()
    return *_tensors(x, y, regression=True), None, None


def _fashion_mnist(config: DataConfig, regression: bool):
    folder = Path(config.path) if config.path else FASHION_MNIST_DIR
    names = ("train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")
    files = []
    for name in names:
        found = [folder / f for f in (name, name + ".gz") if (folder / f).exists()]
        if not found:
            raise FileNotFoundError(
                f"Fashion-MNIST file {name}[.gz] not found in {folder}: install Debian's package "
                f"(apt-get install dataset-fashion-mnist) or pass --data-dir with the four IDX files"
            )
        files.append(found[0])
    x, y, x_test, y_test = (read_idx(f) for f in files)
    x, y = _tensors(x / 255.0, y)
    x_test, y_test = _tensors(x_test / 255.0, y_test)
    return x[:, None], y, x_test[:, None], y_test


def read_idx(path: str | Path) -> np.ndarray:
    """Read an IDX file (plain or gzipped): magic 0,0,type,ndim, then big-endian int32 dims."""
    opener = gzip.open if str(path).endswith(".gz") else open
    with opener(path, "rb") as f:
        raw = f.read()
    dtypes = {0x08: ">u1", 0x09: ">i1", 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] not in dtypes:
        raise ValueError(f"{path} is not an IDX file (bad magic number)")
    ndim = raw[3]
    shape = struct.unpack(f">{ndim}i", raw[4 : 4 + 4 * ndim])
    dtype = np.dtype(dtypes[raw[2]])
    data = np.frombuffer(raw, dtype=dtype, offset=4 + 4 * ndim)
    if data.size != int(np.prod(shape)):
        raise ValueError(f"{path}: header says shape {shape} but holds {data.size} values")
    return data.reshape(shape)


def _user_file(config: DataConfig, suffix: str) -> Path:
    path = Path(config.path)
    if not path.is_file():
        raise FileNotFoundError(f"data file not found: {path}")
    if path.suffix.lower() != suffix:
        raise ValueError(f"data.name = {config.name!r} expects a {suffix} file, got {path}")
    return path


def _npz(config: DataConfig, regression: bool):
    path = _user_file(config, ".npz")
    with np.load(path, allow_pickle=False) as d:
        for key in ("x", "y"):
            if key not in d:
                raise ValueError(
                    f"{path} has no array {key!r} (found {', '.join(d.files)}); expected x, y [, x_test, y_test]"
                )
        if ("x_test" in d) != ("y_test" in d):
            raise ValueError(f"{path}: x_test and y_test must be given together")
        y, y_test = d["y"], d["y_test"] if "y_test" in d else None
        if regression:
            for targets in (y, y_test):
                if targets is not None and not np.issubdtype(targets.dtype, np.number):
                    raise ValueError(f"{path}: regression targets must be numbers, got dtype {targets.dtype}")
            classes = []
        else:
            y, y_test, classes = _labels(y, y_test, path)
        x, y = _tensors(d["x"], y, regression)
        if y_test is None:
            return x, y, None, None, classes
        return x, y, *_tensors(d["x_test"], y_test, regression), classes


def _csv(config: DataConfig, regression: bool):
    """A header row, then one sample per line: numeric features (empty = missing, refused
    later as NaN) and the label column ``config.label_column`` (the target, for regression)."""
    path = _user_file(config, ".csv")
    with open(path, newline="", encoding="utf-8-sig") as f:
        rows = [(i, row) for i, row in enumerate(csv.reader(f), start=1) if any(cell.strip() for cell in row)]
    if not rows:
        raise ValueError(f"{path} is empty; expected a header row, then one sample per line")
    header = [name.strip() for name in rows[0][1]]
    if config.label_column not in header:
        other = next(
            (
                name
                for sep, name in ((";", "semicolons"), ("\t", "tabs"), ("|", "bars"))
                if len(header) == 1 and sep in header[0]
            ),
            None,
        )
        if other:
            raise ValueError(
                f"{path} separates its columns with {other}; reglab reads comma-separated values (header: {header[0]!r})"
            )
        raise ValueError(
            f"{path} has no label column {config.label_column!r}; columns: {', '.join(header)} (set data.label_column)"
        )
    for line, row in rows[1:]:
        if len(row) != len(header):
            raise ValueError(f"{path}: line {line} has {len(row)} fields, the header {len(header)}")
    label = header.index(config.label_column)
    features = [j for j in range(len(header)) if j != label]
    if not features:
        raise ValueError(f"{path} has no feature columns besides {config.label_column!r}")
    x = np.empty((len(rows) - 1, len(features)))
    for i, (line, row) in enumerate(rows[1:]):
        for k, j in enumerate(features):
            cell = row[j].strip()
            try:
                x[i, k] = float(cell) if cell else np.nan
            except ValueError:
                raise ValueError(f"{path}: column {header[j]!r}, line {line}: {cell!r} is not a number") from None
        if not row[label].strip():
            raise ValueError(f"{path}: line {line} has no label")
    names = np.array([row[label].strip() for _, row in rows[1:]])
    try:
        y = names.astype(np.float64)
    except ValueError:
        if regression:
            line, bad = next((line, row[label].strip()) for line, row in rows[1:] if not _is_number(row[label]))
            raise ValueError(
                f"{path}: line {line}: regression target {bad!r} in column {config.label_column!r} is not a number"
            ) from None
        y = names  # class names
    if regression:
        return *_tensors(x, y, regression=True), None, None
    y, _, classes = _labels(y, None, path)
    return *_tensors(x, y), None, None, classes


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def _labels(y: np.ndarray, y_test: np.ndarray | None, path) -> tuple[np.ndarray, np.ndarray | None, list[str]]:
    """Integer labels as they are (checked), or class names numbered in sorted order; test
    labels must name training classes."""
    if y.dtype.kind not in "US":
        for labels in (y, y_test):
            if labels is not None:
                _check_integral(labels, path)
        return y, y_test, []
    classes = sorted(set(y.astype(str).tolist()))
    index = {name: i for i, name in enumerate(classes)}
    encoded = [np.array([index[v] for v in y.astype(str).tolist()], dtype=np.int64)]
    if y_test is not None:
        unknown = sorted(set(y_test.astype(str).tolist()) - set(classes))
        if unknown:
            raise ValueError(f"{path}: test label {unknown[0]!r} is not a training class ({', '.join(classes)})")
        encoded.append(np.array([index[v] for v in y_test.astype(str).tolist()], dtype=np.int64))
    return encoded[0], encoded[1] if y_test is not None else None, classes


_REAL_HINT = "; for real-valued targets (a regression) set training.loss = mse or mae (--loss mse)"


def _check_integral(y: np.ndarray, path) -> None:
    if not np.issubdtype(y.dtype, np.number) or not np.all(np.isfinite(y)) or not np.all(np.mod(y, 1) == 0):
        real = np.issubdtype(y.dtype, np.floating) and np.all(np.isfinite(y))  # not a missing label: a real value
        hint = _REAL_HINT if real else ""
        raise ValueError(
            f"{path}: labels must be integers 0..K-1, or class names (found non-integer or missing values){hint}"
        )


_LOADERS = {
    "mnist1d": _mnist1d,
    "digits": _digits,
    "diabetes": _diabetes,
    "fashion-mnist": _fashion_mnist,
    "npz": _npz,
    "csv": _csv,
}
