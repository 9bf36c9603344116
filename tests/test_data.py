import gzip
import struct
import subprocess
import sys

import numpy as np
import pytest
import torch

from reglab import data as data_mod
from reglab.data import Data, check_arrays, load_data, read_idx
from reglab.lab.recipe import DataConfig
from reglab.train import Trainer


@pytest.mark.slow
def test_mnist1d_default_split_and_cache(monkeypatch):
    d = load_data(DataConfig(), seed=0)
    assert d.input_shape == (1, 40) and d.num_classes == 10
    assert (len(d.x_train), len(d.x_valid), len(d.x_test)) == (3200, 800, 1000)
    assert d.x_train.dtype == torch.float32 and d.y_train.dtype == torch.int64
    assert list(data_mod.cache_dir().glob("mnist1d-*.npz")), "MNIST-1D was not cached"

    def no_generation(*a, **k):
        raise AssertionError("the cached data set must be reused")

    monkeypatch.setattr("mnist1d.data.make_dataset", no_generation)
    again = load_data(DataConfig(), seed=0)
    assert torch.equal(again.x_train, d.x_train) and torch.equal(again.y_valid, d.y_valid)

    # read from the cache without importing the package (it imports requests, scipy, pyplot)
    code = (
        "import sys; from reglab.data import load_data; from reglab.lab.recipe import DataConfig; "
        "load_data(DataConfig(), 0); print('mnist1d' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


@pytest.mark.slow
def test_mnist1d_without_a_writable_cache_is_generated_in_memory(tmp_path, monkeypatch):
    """An unwritable cache folder (a read-only home) ended the run with 'No such file or
    directory: <cache>'; now the set is generated in memory, the same as cached, with a warning
    that names the folder and REGLAB_CACHE."""
    cached = load_data(DataConfig(), seed=0)
    blocker = tmp_path / "file"
    blocker.write_text("")
    monkeypatch.setenv("REGLAB_CACHE", str(blocker / "cache"))  # under a file: cannot be made
    with pytest.warns(UserWarning, match=r"cannot cache MNIST-1D in .*file/cache .*REGLAB_CACHE"):
        d = load_data(DataConfig(), seed=0)
    assert torch.equal(d.x_train, cached.x_train) and torch.equal(d.y_test, cached.y_test)
    assert not (blocker / "cache").exists()


def test_validation_split_is_deterministic_by_seed_and_disjoint():
    cfg = DataConfig(name="digits")
    a, b, c = load_data(cfg, 1), load_data(cfg, 1), load_data(cfg, 2)
    assert torch.equal(a.x_valid, b.x_valid) and torch.equal(a.y_train, b.y_train)
    assert not torch.equal(a.x_valid, c.x_valid)
    assert torch.equal(a.x_test, c.x_test), "the test set must not depend on the seed"
    rows = lambda x: {tuple(r.tolist()) for r in x.flatten(1)}  # noqa: E731
    assert not rows(a.x_valid) & rows(a.x_test)
    assert len(a.x_train) + len(a.x_valid) + len(a.x_test) == 1797


def test_digits_shape_and_range():
    d = load_data(DataConfig(name="digits"), 0)
    assert d.input_shape == (1, 8, 8) and d.num_classes == 10
    assert 0 <= float(d.x_train.min()) and float(d.x_train.max()) <= 1


def _write_idx(path, array, gz=True):
    header = bytes([0, 0, 0x08, array.ndim]) + struct.pack(f">{array.ndim}i", *array.shape)
    raw = header + array.astype(np.uint8).tobytes()
    with (gzip.open if gz else open)(path, "wb") as f:
        f.write(raw)


def test_fashion_mnist_from_idx_folder(tmp_path):
    rng = np.random.default_rng(0)
    _write_idx(tmp_path / "train-images-idx3-ubyte.gz", rng.integers(0, 256, (50, 28, 28)))
    _write_idx(tmp_path / "train-labels-idx1-ubyte.gz", np.arange(50) % 10)
    _write_idx(tmp_path / "t10k-images-idx3-ubyte", rng.integers(0, 256, (20, 28, 28)), gz=False)
    _write_idx(tmp_path / "t10k-labels-idx1-ubyte", np.arange(20) % 10, gz=False)
    d = load_data(DataConfig(name="fashion-mnist", path=str(tmp_path)), 0)
    assert d.input_shape == (1, 28, 28) and len(d.x_test) == 20 and len(d.x_train) + len(d.x_valid) == 50
    assert float(d.x_train.max()) <= 1.0


def test_fashion_mnist_missing_says_how_to_get_it(tmp_path):
    with pytest.raises(FileNotFoundError, match="apt-get install dataset-fashion-mnist"):
        load_data(DataConfig(name="fashion-mnist", path=str(tmp_path)), 0)


@pytest.mark.skipif(not data_mod.FASHION_MNIST_DIR.exists(), reason="Debian's dataset-fashion-mnist is not installed")
@pytest.mark.slow
def test_fashion_mnist_debian_package():
    d = load_data(DataConfig(name="fashion-mnist"), 0)
    assert len(d.x_train) + len(d.x_valid) == 60000 and len(d.x_test) == 10000 and d.num_classes == 10


def test_read_idx_rejects_other_files(tmp_path):
    (tmp_path / "f").write_bytes(b"\x89PNG....")
    with pytest.raises(ValueError, match="not an IDX file"):
        read_idx(tmp_path / "f")


def test_npz_and_csv(tmp_path):
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(60, 5)), np.arange(60) % 3
    np.savez(tmp_path / "d.npz", x=x, y=y)
    d = load_data(DataConfig(name="npz", path=str(tmp_path / "d.npz")), 0)
    assert d.input_shape == (5,) and d.num_classes == 3 and len(d.x_test) == 12
    np.savez(tmp_path / "t.npz", x=x, y=y, x_test=x[:7], y_test=y[:7])
    assert len(load_data(DataConfig(name="npz", path=str(tmp_path / "t.npz")), 0).x_test) == 7

    table = np.column_stack([x, y])
    header = "a,b,c,d,e,label"
    np.savetxt(tmp_path / "d.csv", table, delimiter=",", header=header, comments="")
    c = load_data(DataConfig(name="csv", path=str(tmp_path / "d.csv")), 0)
    assert c.input_shape == (5,) and c.num_classes == 3
    assert torch.allclose(
        torch.sort(torch.cat([c.x_train, c.x_valid, c.x_test])[:, 0])[0],
        torch.sort(torch.tensor(x[:, 0], dtype=torch.float32))[0],
    )
    with pytest.raises(ValueError, match="no label column 'y'"):
        load_data(DataConfig(name="csv", path=str(tmp_path / "d.csv"), label_column="y"), 0)


def test_class_names_as_labels(tmp_path):
    """Labels given as names (a CSV's "setosa", a NumPy string array) become 0..K-1 in sorted
    order of the names, which the data keep as ``classes``."""
    rng = np.random.default_rng(0)
    x, names = rng.normal(size=(30, 2)), np.array(["setosa", "virginica", "versicolor"])[np.arange(30) % 3]
    lines = ["a,b,species"] + [f'{u:.6f},{v:.6f},"{n}"' for (u, v), n in zip(x, names)]
    (tmp_path / "iris.csv").write_text("\n".join(lines) + "\n\n")  # quoted names, a blank last line
    c = load_data(DataConfig(name="csv", path=str(tmp_path / "iris.csv"), label_column="species", test_fraction=0.5), 0)
    assert c.classes == ("setosa", "versicolor", "virginica") and c.num_classes == 3
    xs, ys = torch.cat([c.x_train, c.x_valid, c.x_test]), torch.cat([c.y_train, c.y_valid, c.y_test])
    for row, label in zip(xs, ys):  # each sample keeps its own class
        i = int(np.argmin(np.abs(x[:, 0] - float(row[0]))))
        assert c.classes[int(label)] == names[i]
    assert c.to("cpu").classes == c.classes

    np.savez(tmp_path / "n.npz", x=x, y=names, x_test=x[:3], y_test=names[:3])
    n = load_data(DataConfig(name="npz", path=str(tmp_path / "n.npz")), 0)
    assert n.classes == c.classes and [n.classes[int(i)] for i in n.y_test] == list(names[:3])
    np.savez(tmp_path / "u.npz", x=x, y=names, x_test=x[:1], y_test=np.array(["rose"]))
    with pytest.raises(ValueError, match="test label 'rose' is not a training class"):
        load_data(DataConfig(name="npz", path=str(tmp_path / "u.npz")), 0)


@pytest.mark.parametrize(
    "text, match",
    [
        ("a,label\n1.0,0\nabc,1\n", "column 'a', line 3: 'abc' is not a number"),
        ("a,b,label\n1.0,2.0,0\n1.0,1\n", "line 3 has 2 fields, the header 3"),
        ("a,label\n1.0,0\n2.0,\n", "line 3 has no label"),
        ("a,label\n1.0,cat\n2.0,\n", "line 3 has no label"),
        ("", "is empty"),
        ("a;label\n1.0;0\n2.0;1\n", "separates its columns with semicolons; reglab reads comma-separated"),
        ("a\tlabel\n1.0\t0\n2.0\t1\n", "separates its columns with tabs"),
        ("a,label\n" + "1.0,spam\n" * 20, "the labels hold one class \\('spam'\\); a classifier needs at least 2"),
    ],
    ids=[
        "not-a-number",
        "short-row",
        "missing-number-label",
        "missing-name-label",
        "empty",
        "semicolons",
        "tabs",
        "one-class",
    ],
)
def test_malformed_csv_names_the_line(tmp_path, text, match):
    (tmp_path / "d.csv").write_text(text)
    with pytest.raises(ValueError, match=match):
        load_data(DataConfig(name="csv", path=str(tmp_path / "d.csv")), 0)


@pytest.mark.parametrize(
    "x, y, match",
    [
        (np.full((10, 3), np.nan), np.zeros(10), "NaN"),
        (np.ones((10, 3)), np.arange(10) - 1, "0..K-1"),
        (np.ones((10, 3)), np.zeros(9), "10 inputs but 9 labels"),
        (np.ones((10, 3)), np.full(10, 0.5), "integers"),
        (np.ones(10), np.zeros(10), "shape"),
        (np.ones((0, 3)), np.zeros(0), "no samples"),
        (
            np.ones((10, 3)),
            np.zeros(10),
            "the labels hold one class \\(0\\); a classifier needs at least 2; for real-valued",
        ),
    ],
)
def test_bad_user_data_is_refused_before_training(tmp_path, x, y, match):
    np.savez(tmp_path / "bad.npz", x=x, y=y)
    with pytest.raises(ValueError, match=match):
        load_data(DataConfig(name="npz", path=str(tmp_path / "bad.npz")), 0)


def test_test_labels_beyond_training_classes(tmp_path):
    x = np.ones((20, 2))
    np.savez(tmp_path / "d.npz", x=x, y=np.arange(20) % 2, x_test=x[:4], y_test=np.array([0, 1, 2, 0]))
    with pytest.raises(ValueError, match="test labels go up to 2"):
        load_data(DataConfig(name="npz", path=str(tmp_path / "d.npz")), 0)


def test_missing_file_and_wrong_suffix(tmp_path):
    with pytest.raises(FileNotFoundError, match="data file not found"):
        load_data(DataConfig(name="npz", path=str(tmp_path / "none.npz")), 0)
    (tmp_path / "d.txt").write_text("1,2")
    with pytest.raises(ValueError, match="expects a .csv file"):
        load_data(DataConfig(name="csv", path=str(tmp_path / "d.txt")), 0)


def test_check_arrays_inf_and_label_dtype():
    with pytest.raises(ValueError, match="NaN/Inf .*sample 2"):
        check_arrays(torch.tensor([[0.0], [1.0], [float("inf")]]), torch.zeros(3, dtype=torch.long), "x")
    with pytest.raises(ValueError, match="labels must be integers"):
        check_arrays(torch.zeros(3, 1), torch.zeros(3), "x")


def test_diabetes_regression_set():
    d = load_data(DataConfig(name="diabetes"), 0, regression=True)
    assert d.regression and d.num_classes == 0 and d.num_outputs == 1 and d.input_shape == (10,)
    assert d.y_train.dtype == torch.float32 and d.y_train.shape == (len(d.x_train), 1)
    assert len(d.x_train) + len(d.x_valid) + len(d.x_test) == 442
    everything = torch.cat([d.y_train, d.y_valid, d.y_test]).double()
    assert abs(float(everything.mean())) < 1e-6 and float(everything.std(unbiased=False)) == pytest.approx(1, abs=1e-6)
    with pytest.raises(ValueError, match="'diabetes' is a regression data set"):
        load_data(DataConfig(name="diabetes"), 0, regression=False)
    assert torch.equal(load_data(DataConfig(name="diabetes"), 0).y_train, d.y_train)  # None: the data set's own kind
    with pytest.raises(ValueError, match="'digits' is a classification data set.*mse, mae or huber"):
        load_data(DataConfig(name="digits"), 0, regression=True)


def test_regression_targets_from_npz_and_csv(tmp_path):
    rng = np.random.default_rng(0)
    x = rng.normal(size=(40, 3))
    np.savez(tmp_path / "one.npz", x=x, y=x.sum(1))
    np.savez(tmp_path / "two.npz", x=x, y=np.stack([x[:, 0], -x[:, 1]], 1), x_test=x[:5], y_test=np.zeros((5, 2)))
    one = load_data(DataConfig(name="npz", path=str(tmp_path / "one.npz")), 0, regression=True)
    assert one.num_outputs == 1 and one.y_train.shape == (len(one.x_train), 1)
    assert torch.allclose(one.y_train[:, 0], one.x_train.sum(1), atol=1e-5)  # targets stay with their inputs
    two = load_data(DataConfig(name="npz", path=str(tmp_path / "two.npz")), 0, regression=True)
    assert two.num_outputs == 2 and two.y_test.shape == (5, 2)
    lines = ["a,b,price"] + [f"{i},{2 * i},{i * 0.5 + 0.25}" for i in range(20)]
    (tmp_path / "r.csv").write_text("\n".join(lines) + "\n")
    d = load_data(DataConfig(name="csv", path=str(tmp_path / "r.csv"), label_column="price"), 0, regression=True)
    assert d.y_train.dtype == torch.float32 and torch.allclose(d.y_train[:, 0], d.x_train[:, 0] * 0.5 + 0.25)
    # the same csv as classification data: 0.25, 0.75, ... are not class labels, and the error says what to set
    with pytest.raises(
        ValueError, match=r"labels must be integers.*regression\) set training.loss = mse, mae or huber \(--loss mse\)"
    ):
        load_data(DataConfig(name="csv", path=str(tmp_path / "r.csv"), label_column="price"), 0)
    np.savez(tmp_path / "gap.npz", x=x[:4], y=np.array([0.0, np.nan, 1.0, 2.0]))  # a missing label: no regression hint
    with pytest.raises(ValueError, match=r"missing values\)$"):
        load_data(DataConfig(name="npz", path=str(tmp_path / "gap.npz")), 0)


@pytest.mark.parametrize(
    "y, match",
    [
        (np.where(np.arange(10) == 3, np.nan, 1.0), "1 NaN/Inf targets .*sample"),
        (np.array(["a", "b"] * 5), "regression targets must be numbers"),
        (np.ones((10, 2, 2)), r"targets of shape \(N, D\)"),
    ],
)
def test_bad_regression_targets(tmp_path, y, match):
    np.savez(tmp_path / "bad.npz", x=np.ones((10, 3)), y=y)
    with pytest.raises(ValueError, match=match):
        load_data(DataConfig(name="npz", path=str(tmp_path / "bad.npz"), test_fraction=0.3), 0, regression=True)


def test_csv_regression_target_must_be_a_number(tmp_path):
    (tmp_path / "r.csv").write_text("a,y\n1,2.5\n2,high\n3,1\n")
    with pytest.raises(ValueError, match="line 3: regression target 'high' in column 'y' is not a number"):
        load_data(DataConfig(name="csv", path=str(tmp_path / "r.csv"), label_column="y"), 0, regression=True)


def test_train_size_keeps_a_nested_random_subset_and_the_same_validation_and_test_sets():
    full = load_data(DataConfig(name="digits"), seed=3)
    small, smaller = (load_data(DataConfig(name="digits", train_size=n), seed=3) for n in (400, 100))
    assert (len(small.x_train), len(smaller.x_train)) == (400, 100)
    assert torch.equal(smaller.x_train, small.x_train[:100]) and torch.equal(small.x_train, full.x_train[:400]), (
        "nested in N"
    )
    for d in (small, smaller):
        assert torch.equal(d.x_valid, full.x_valid) and torch.equal(d.x_test, full.x_test) and d.num_classes == 10
    other = load_data(DataConfig(name="digits", train_size=400), seed=4)
    assert not torch.equal(other.y_train, small.y_train), "another seed draws another subset"
    assert len(np.unique(small.y_train.numpy())) == 10, "a random subset, not the first classes"
    with pytest.raises(ValueError, match="data.train_size = 5000, but the training split holds 1150"):
        load_data(DataConfig(name="digits", train_size=5000), seed=3)
    with pytest.raises(ValueError, match="data.train_size"):
        DataConfig(train_size=-1)


def _parts(n=12, features=3, classes=3, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, features, generator=g), torch.arange(n) % classes


@pytest.mark.parametrize(
    "change, match",
    [
        (
            {"x_valid": lambda x: x.masked_fill(torch.eye(len(x), x.shape[1], dtype=torch.bool), float("nan"))},
            r"validation data: \d+ NaN/Inf input values",
        ),
        ({"y_test": lambda y: y + 5}, r"test data: labels must be in 0..2 \(num_classes = 3\), found 7"),
        ({"x_test": lambda x: x[:, :2]}, r"test inputs have shape \(2,\) per sample, training inputs \(3,\)"),
        ({"y_train": lambda y: y[:-1]}, "training data: 12 inputs but 11 labels"),
        (
            {"y_valid": lambda y: y.float()[:, None]},
            "validation targets are torch.float32 .* training labels torch.int64",
        ),
        ({"num_classes": lambda k: 1}, "num_classes must be >= 2"),
    ],
)
def test_a_data_object_is_checked_when_made(change, match):
    """Data built by hand (the library's fit takes one) gets the checks load_data makes."""
    x, y = _parts()
    fields = {
        "x_train": x,
        "y_train": y,
        "x_valid": x.clone(),
        "y_valid": y.clone(),
        "x_test": x.clone(),
        "y_test": y.clone(),
        "num_classes": 3,
    }
    ((key, fn),) = change.items()
    fields[key] = fn(fields[key])
    with pytest.raises(ValueError, match=match):
        Data("mine", **fields)
    Data("mine", x, y, x, y, x, y, 3)  # the unchanged parts are fine


def test_data_by_hand_takes_tensors_and_any_integer_labels():
    """int32 / uint8 labels become int64 (cross_entropy refuses int32 at the first step); a
    NumPy array is refused by name, with the conversion."""
    x, y = _parts()
    data = Data("mine", x, y.int(), x, y.to(torch.uint8), x, y.short(), 3)
    assert all(t.dtype == torch.int64 for t in (data.y_train, data.y_valid, data.y_test))
    assert torch.equal(data.y_train, y)
    model = torch.nn.Linear(3, 3)
    fit_history = Trainer(model, data, torch.optim.SGD(model.parameters(), lr=0.1), epochs=1, batch_size=4).fit()
    assert len(fit_history) == 1
    with pytest.raises(TypeError, match=r"Data: x_valid must be a torch.Tensor, got ndarray; torch.as_tensor converts"):
        Data("mine", x, y, x.numpy(), y, x, y, 3)
    with pytest.raises(TypeError, match=r"Data: y_test must be a torch.Tensor, got list$"):
        Data("mine", x, y, x, y, x, y.tolist(), 3)


def test_load_data_takes_a_name_or_a_file(tmp_path):
    by_name = load_data("digits", seed=3)
    by_config = load_data(DataConfig(name="digits"), 3)
    assert (
        by_name.name == "digits"
        and torch.equal(by_name.x_train, by_config.x_train)
        and torch.equal(by_name.y_valid, by_config.y_valid)
    )
    f = tmp_path / "tiny.npz"
    np.savez(f, x=np.random.default_rng(0).normal(size=(40, 5)).astype(np.float32), y=np.arange(40) % 2)
    assert load_data(str(f)).input_shape == (5,) and load_data(f).num_classes == 2
    with pytest.raises(
        TypeError,
        match="load_data takes a DataConfig \\(recipe.data\\), a data set's name or a .npz/.csv path; got dict",
    ):
        load_data({"name": "digits"})
    with pytest.raises(ValueError, match="data.name must be one of"):
        load_data("mnist-1d")
    with pytest.raises(TypeError, match="seed must be an integer"):
        load_data("digits", seed=0.5)
    with pytest.raises(TypeError, match="regression must be"):
        load_data("digits", regression="yes")


def test_noise_features_append_pure_noise_inputs_at_the_training_inputs_scale():
    plain = load_data(DataConfig(name="mnist1d"), seed=3)
    noisy = load_data(DataConfig(name="mnist1d", noise_features=40), seed=3)
    for part in ("x_train", "x_valid", "x_test"):
        a, b = getattr(plain, part), getattr(noisy, part)
        assert b.shape == (*a.shape[:-1], a.shape[-1] + 40)
        assert torch.equal(b[..., :40], a), "the real inputs are unchanged"
    noise = noisy.x_train[..., 40:].double()
    assert noise.std().item() == pytest.approx(plain.x_train.double().std().item(), rel=0.02)
    assert abs(noise.mean().item()) < 0.05 * noise.std().item()
    corr = np.corrcoef(noise.flatten()[:-1].numpy(), noise.flatten()[1:].numpy())[0, 1]
    assert abs(corr) < 0.05, "independent draws"
    assert torch.equal(load_data(DataConfig(name="mnist1d", noise_features=40), seed=3).x_train, noisy.x_train)
    tabular = load_data(DataConfig(name="diabetes", noise_features=5), seed=0, regression=True)
    assert tabular.x_train.shape[1] == 15
    with pytest.raises(ValueError, match="data.noise_features appends inputs to signals or rows"):
        load_data(DataConfig(name="digits", noise_features=3), seed=0)


def test_outliers_move_a_fraction_of_the_training_targets_only():
    clean = load_data(DataConfig(name="diabetes"), seed=1, regression=True)
    dirty = load_data(DataConfig(name="diabetes", outliers=0.1, outlier_size=10.0), seed=1, regression=True)
    moved = (dirty.y_train != clean.y_train).flatten()
    assert int(moved.sum()) == round(0.1 * len(clean.y_train))
    shift = (dirty.y_train - clean.y_train)[moved]
    assert torch.allclose(shift, torch.full_like(shift, 10.0 * clean.y_train.double().std().item()), rtol=1e-5)
    assert torch.equal(dirty.y_valid, clean.y_valid) and torch.equal(dirty.y_test, clean.y_test)
    with pytest.raises(ValueError, match="data.outliers = 0.1 moves regression targets"):
        DataConfig(name="digits", outliers=0.1)
    with pytest.raises(ValueError, match="data.outliers must be"):
        DataConfig(name="diabetes", outliers=1.5)


def test_digits_are_read_once_and_each_load_owns_its_tensors(monkeypatch):
    import sklearn.datasets

    from reglab.data import sets

    sets._digits_set.cache_clear()
    reads = []
    real = sklearn.datasets.load_digits
    monkeypatch.setattr(sklearn.datasets, "load_digits", lambda: reads.append(1) or real())
    first = load_data("digits", seed=0)
    first.x_train.mul_(0)  # a caller that scales its inputs in place
    first.y_train.zero_()  # and relabels
    again = load_data("digits", seed=0)
    assert len(reads) == 1
    assert again.x_train.abs().sum() > 0 and float(again.x_train.max()) == 1.0
    assert set(again.y_train.tolist()) == set(range(10))
    sets._digits_set.cache_clear()
