"""The report opens in headless Chromium: every figure loads, every arm is listed, no errors.

Chromium is driven over the DevTools protocol (websocket-client); the test needs Debian's
``chromium`` (installed by .ci/run) and is skipped only outside CI when it is absent.
"""

import json
import os
import shutil
import subprocess
import time
import urllib.request

import pytest
from study_helpers import planned, tiny_base

from reglab.lab.study import make_plan, run_study

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")
pytestmark = pytest.mark.skipif(
    CHROMIUM is None and not os.environ.get("CI"), reason="chromium is not installed (CI installs it)"
)


class DevTools:
    """A minimal DevTools-protocol client over one page's websocket."""

    def __init__(self, ws_url: str) -> None:
        import websocket

        self.ws = websocket.create_connection(ws_url, timeout=30, suppress_origin=True)
        self.next_id, self.events = 0, []

    def call(self, method: str, **params):
        self.next_id += 1
        self.ws.send(json.dumps({"id": self.next_id, "method": method, "params": params}))
        while True:
            msg = json.loads(self.ws.recv())
            if msg.get("id") == self.next_id:
                if "error" in msg:
                    raise RuntimeError(msg["error"])
                return msg["result"]
            self.events.append(msg)

    def wait_for(self, method: str, timeout: float = 30):
        end = time.time() + timeout
        while time.time() < end:
            if any(e.get("method") == method for e in self.events):
                return
            self.events.append(json.loads(self.ws.recv()))
        raise TimeoutError(method)


@pytest.fixture
def chromium(tmp_path):
    assert CHROMIUM, "chromium is missing: .ci/run installs it from Debian"
    proc = subprocess.Popen(
        [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--remote-debugging-port=0",
         f"--user-data-dir={tmp_path / 'profile'}", "about:blank"],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    port = None
    end = time.time() + 60
    while port is None and time.time() < end:
        line = proc.stderr.readline()
        if "DevTools listening on ws://" in line:
            port = int(line.split("ws://")[1].split("/")[0].rsplit(":", 1)[1])
    assert port, "chromium did not start its DevTools server"
    try:
        yield port
    finally:
        proc.kill()
        proc.communicate()  # reaps it and closes its stderr pipe


@pytest.mark.parametrize("task", ["classification", "regression"])
@pytest.mark.slow
def test_report_opens_in_headless_chromium_with_every_figure_and_arm(signals, tmp_path, chromium, task, request):
    arms = ["baseline", "early-stopping", "l1-proximal", "l2", "dropout", "combination"]
    base = (
        tiny_base(signals)
        if task == "classification"
        else tiny_base(signals).updated({"data.name": "diabetes", "training.loss": "mse"})
    )
    run_study(make_plan(base, arms=arms, seeds=2), tmp_path / "study")
    with urllib.request.urlopen(f"http://127.0.0.1:{chromium}/json/list") as response:
        pages = json.loads(response.read())
    page = next(p for p in pages if p["type"] == "page")
    tools = DevTools(page["webSocketDebuggerUrl"])
    request.addfinalizer(tools.ws.close)
    for domain in ("Page", "Runtime", "Log"):
        tools.call(f"{domain}.enable")
    tools.events.clear()
    tools.call("Page.navigate", url=(tmp_path / "study" / "report.html").as_uri())
    tools.wait_for("Page.loadEventFired")
    images = tools.call(
        "Runtime.evaluate", returnByValue=True,
        expression="[...document.images].map(i => [i.alt, i.complete, i.naturalWidth, i.naturalHeight])",
    )["result"]["value"]  # fmt: skip
    listed = tools.call(
        "Runtime.evaluate",
        returnByValue=True,
        expression="[...document.querySelectorAll('#leaderboard tbody tr')].map(r => r.dataset.arm)",
    )["result"]["value"]
    time.sleep(0.5)
    tools.call("Runtime.evaluate", expression="1")  # collect events that arrived meanwhile
    errors = [
        e for e in tools.events
        if e.get("method") in ("Runtime.exceptionThrown", "Log.entryAdded")
        and (e["method"] == "Runtime.exceptionThrown" or e["params"]["entry"]["level"] == "error")
        or (e.get("method") == "Runtime.consoleAPICalled" and e["params"]["type"] in ("error", "assert"))
    ]  # fmt: skip
    figures = ["train vs validation loss per arm", "validation loss of all arms", "first-layer weight histograms"]
    assert [alt for alt, *_ in images] == [
        *figures,
        "test accuracy per arm" if task == "classification" else "test loss per arm",
    ]
    assert all(complete and w > 0 and h > 0 for _, complete, w, h in images), images
    from reglab.lab.study.storage import StudyStore, sqlite_url

    assert sorted(listed) == sorted(planned(StudyStore(sqlite_url(tmp_path / "study"), "regularization"), arms))
    assert errors == []
