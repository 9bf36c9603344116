"""Your own data from files: ``.npz`` (arrays ``x``, ``y`` and optionally ``x_test``,
``y_test``), ``.csv`` (a header row, numeric feature columns and a label column), and the IDX
files of MNIST-like sets. Labels are integers 0..K-1, or class names numbered in sorted order."""

from __future__ import annotations

import csv
import gzip
import struct
import zipfile
from pathlib import Path
from typing import Any

import numpy as np

from reglab.data.tensors import as_tensors
from reglab.errors import InputError, MissingFileError, ReglabError


def read_idx(path: str | Path) -> np.ndarray:
    """Read an IDX file (plain or gzipped): magic 0,0,type,ndim, then big-endian int32 dims."""
    opener = gzip.open if str(path).endswith(".gz") else open
    with opener(path, "rb") as f:
        raw = f.read()
    dtypes = {0x08: ">u1", 0x09: ">i1", 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] not in dtypes:
        raise ReglabError(f"{path} is not an IDX file (bad magic number)")
    ndim = raw[3]
    shape = struct.unpack(f">{ndim}i", raw[4 : 4 + 4 * ndim])
    dtype = np.dtype(dtypes[raw[2]])
    data = np.frombuffer(raw, dtype=dtype, offset=4 + 4 * ndim)
    if data.size != int(np.prod(shape)):
        raise ReglabError(f"{path}: header says shape {shape} but holds {data.size} values")
    return data.reshape(shape)


def _user_file(config: Any, suffix: str) -> Path:
    path = Path(config.path)
    if not path.is_file():
        raise MissingFileError(f"data file not found: {path}")
    if path.suffix.lower() != suffix:
        raise ReglabError(f"data.name = {config.name!r} expects a {suffix} file, got {path}")
    return path


def _unreadable(path: Path, kind: str, e: Exception) -> ReglabError:
    """The one-line error for a user's file that its reader refuses (not an archive, not text,
    arrays of objects, ...): input, not a bug."""
    reason = " ".join(str(e).split()) or type(e).__name__
    return ReglabError(f"{path} cannot be read as {kind}: {reason}")


def npz_file(config: Any, regression: bool):
    path = _user_file(config, ".npz")
    try:
        return _npz_arrays(path, regression)
    except (OSError, ValueError, zipfile.BadZipFile) as e:  # numpy's words for a file that is not a .npz
        if isinstance(e, InputError):
            raise
        raise _unreadable(path, "a NumPy .npz archive (np.savez)", e) from e


def _npz_arrays(path: Path, regression: bool):
    with np.load(path, allow_pickle=False) as d:
        for key in ("x", "y"):
            if key not in d:
                raise ReglabError(
                    f"{path} has no array {key!r} (found {', '.join(d.files)}); expected x, y [, x_test, y_test]"
                )
        if ("x_test" in d) != ("y_test" in d):
            raise ReglabError(f"{path}: x_test and y_test must be given together")
        y, y_test = _array(d, "y", path), _array(d, "y_test", path) if "y_test" in d else None
        if regression:
            for targets in (y, y_test):
                if targets is not None and not np.issubdtype(targets.dtype, np.number):
                    raise ReglabError(f"{path}: regression targets must be numbers, got dtype {targets.dtype}")
            classes = []
        else:
            y, y_test, classes = _labels(y, y_test, path)
        x, y = as_tensors(_array(d, "x", path), y, regression)
        if y_test is None:
            return x, y, None, None, classes
        return x, y, *as_tensors(_array(d, "x_test", path), y_test, regression), classes


def _array(d: Any, key: str, path: Path) -> np.ndarray:
    """One array of an .npz: numbers (inputs) or numbers and strings (labels); an array of
    Python objects is refused (never unpickled), strings as inputs too, each naming the key."""
    try:
        a = d[key]
    except ValueError:  # numpy: "Object arrays cannot be loaded when allow_pickle=False"
        raise ReglabError(
            f"{path}: {key} holds Python objects (dtype object), which reglab does not unpickle; save it as "
            f"numbers: np.savez(..., {key}=np.asarray({key}, dtype=np.float32))"
        ) from None
    text = a.dtype.kind in "USO"
    if key.startswith("x") and (text or a.dtype.kind not in "biuf"):
        what = {"U": "strings", "S": "byte strings", "c": "complex numbers", "M": "dates", "m": "time spans"}
        raise ReglabError(
            f"{path}: {key} holds {what.get(a.dtype.kind, 'values')} (dtype {a.dtype}); inputs must be real numbers"
        )
    return a


def csv_file(config: Any, regression: bool):
    """A header row, then one sample per line: numeric features (an empty cell, a missing value,
    is refused naming its line and column) and the label column ``config.label_column`` (the target, for regression)."""
    path = _user_file(config, ".csv")
    try:
        with open(path, newline="", encoding="utf-8-sig") as f:
            rows = [(i, row) for i, row in enumerate(csv.reader(f), start=1) if any(cell.strip() for cell in row)]
    except (UnicodeDecodeError, csv.Error) as e:
        raise _unreadable(path, "UTF-8 comma-separated text", e) from e
    if not rows:
        raise ReglabError(f"{path} is empty; expected a header row, then one sample per line")
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
            raise ReglabError(
                f"{path} separates its columns with {other}; reglab reads comma-separated values (header: "
                f"{header[0]!r})"
            )
        raise ReglabError(
            f"{path} has no label column {config.label_column!r}; columns: {', '.join(header)} (set data.label_column)"
        )
    for line, row in rows[1:]:
        if len(row) != len(header):
            raise ReglabError(f"{path}: line {line} has {len(row)} fields, the header {len(header)}")
    label = header.index(config.label_column)
    features = [j for j in range(len(header)) if j != label]
    if not features:
        raise ReglabError(f"{path} has no feature columns besides {config.label_column!r}")
    x = np.empty((len(rows) - 1, len(features)))
    for i, (line, row) in enumerate(rows[1:]):
        for k, j in enumerate(features):
            cell = row[j].strip()
            if not cell:
                raise ReglabError(
                    f"{path}: column {header[j]!r}, line {line} is empty (a missing value): fill it in or drop the line"
                )
            try:
                x[i, k] = float(cell)
            except ValueError:
                raise ReglabError(f"{path}: column {header[j]!r}, line {line}: {cell!r} is not a number") from None
        if not row[label].strip():
            raise ReglabError(f"{path}: line {line} has no label")
    names = np.array([row[label].strip() for _, row in rows[1:]])
    try:
        y = names.astype(np.float64)
    except ValueError:
        if regression:
            line, bad = next((line, row[label].strip()) for line, row in rows[1:] if not _is_number(row[label]))
            raise ReglabError(
                f"{path}: line {line}: regression target {bad!r} in column {config.label_column!r} is not a number"
            ) from None
        y = names  # class names
    if regression:
        return *as_tensors(x, y, regression=True), None, None
    y, _, classes = _labels(y, None, path)
    return *as_tensors(x, y), None, None, classes


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
            raise ReglabError(f"{path}: test label {unknown[0]!r} is not a training class ({', '.join(classes)})")
        encoded.append(np.array([index[v] for v in y_test.astype(str).tolist()], dtype=np.int64))
    return encoded[0], encoded[1] if y_test is not None else None, classes


REAL_HINT = "; for real-valued targets (a regression) set training.loss = mse, mae or huber (--loss mse)"


def _check_integral(y: np.ndarray, path) -> None:
    if not np.issubdtype(y.dtype, np.number) or not np.all(np.isfinite(y)) or not np.all(np.mod(y, 1) == 0):
        real = np.issubdtype(y.dtype, np.floating) and np.all(np.isfinite(y))  # not a missing label: a real value
        hint = REAL_HINT if real else ""
        raise ReglabError(
            f"{path}: labels must be integers 0..K-1, or class names (found non-integer or missing values){hint}"
        )
