import os
import shutil
import tempfile
from pathlib import Path

import numpy as np
import pytest
import torch

# Generated data sets (MNIST-1D, ~3.7 s to make) are cached in the checkout's .pytest_cache, kept
# between test sessions, never in the user's cache.
os.environ.setdefault("REGLAB_CACHE", str(Path(__file__).resolve().parent.parent / ".pytest_cache" / "reglab-data"))

from reglab.data import Data  # noqa: E402


def make_data(n_train=96, n_valid=32, n_test=32, features=8, classes=3, seed=0, shape=None) -> Data:
    """A small separable classification problem, fast enough for loop tests."""
    g = torch.Generator().manual_seed(seed)
    centers = torch.randn(classes, features, generator=g) * 3

    def part(n):
        y = torch.randint(0, classes, (n,), generator=g)
        x = centers[y] + torch.randn(n, features, generator=g)
        return (x if shape is None else x.reshape(n, *shape)), y

    return Data("toy", *part(n_train), *part(n_valid), *part(n_test), num_classes=classes)


@pytest.fixture
def toy_data() -> Data:
    return make_data()


@pytest.fixture(scope="session")
def signals(tmp_path_factory):
    """A small 3-class signal data set (.npz, length-24 signals): studies on it take seconds."""
    rng = np.random.default_rng(0)
    n, length = 300, 24
    y = np.arange(n) % 3
    t = np.linspace(0, 1, length)
    x = np.sin(2 * np.pi * (y[:, None] + 1) * t) + rng.normal(scale=1.2, size=(n, length))
    path = tmp_path_factory.mktemp("data") / "signals.npz"
    np.savez(path, x=x[:, None, :].astype(np.float32), y=y)
    return path


@pytest.fixture
def chromium(tmp_path):
    """A headless Chromium's DevTools port (``browser.open_page`` loads a report in it)."""
    from browser import start_chromium, stop_chromium

    proc, port = start_chromium(tmp_path / "profile")
    try:
        yield port
    finally:
        stop_chromium(proc)


@pytest.fixture(scope="module")
def chromium_module(tmp_path_factory):
    """One headless Chromium for a module's tests."""
    from browser import start_chromium, stop_chromium

    proc, port = start_chromium(tmp_path_factory.mktemp("chromium") / "profile")
    try:
        yield port
    finally:
        stop_chromium(proc)


FRESH_VENV_TEST = "test_readme.py::test_the_two_set_up_lines_work_in_a_fresh_venv"
_fresh_venv: list = []  # the background install, once started


def _start_fresh_venv():
    """The background install (started once), or the error that kept it from starting: raised
    by the test that waits for it, not at collection, where it would stop the whole session."""
    if not _fresh_venv:
        from test_readme import FreshVenv

        root = Path(tempfile.mkdtemp(prefix="reglab-fresh-venv-"))
        try:
            _fresh_venv.append(FreshVenv(root))
        except Exception as e:
            shutil.rmtree(root, ignore_errors=True)
            _fresh_venv.append(e)
    return _fresh_venv[0]


def pytest_collection_finish(session):
    """The README's install in a fresh venv starts in the background as the session begins, when
    the test that checks it is selected (it waits for it: tests/test_readme.py)."""
    if session.config.option.collectonly:
        return
    if any(item.nodeid.endswith(FRESH_VENV_TEST) for item in session.items):
        _start_fresh_venv()


def pytest_sessionfinish(session):
    for fresh in _fresh_venv:
        if not isinstance(fresh, Exception):
            fresh.stop()
            shutil.rmtree(fresh.root, ignore_errors=True)


@pytest.fixture(scope="session")
def fresh_venv():
    fresh = _start_fresh_venv()
    if isinstance(fresh, Exception):
        raise fresh
    return fresh
