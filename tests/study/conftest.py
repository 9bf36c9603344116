import numpy as np
import pytest


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

