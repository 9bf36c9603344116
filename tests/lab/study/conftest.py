import pytest
from browser import start_chromium, stop_chromium


@pytest.fixture
def chromium(tmp_path):
    """A headless Chromium's DevTools port (``browser.open_page`` loads a report in it)."""
    proc, port = start_chromium(tmp_path / "profile")
    try:
        yield port
    finally:
        stop_chromium(proc)


@pytest.fixture(scope="module")
def chromium_module(tmp_path_factory):
    """One headless Chromium for a module's tests."""
    proc, port = start_chromium(tmp_path_factory.mktemp("chromium") / "profile")
    try:
        yield port
    finally:
        stop_chromium(proc)
