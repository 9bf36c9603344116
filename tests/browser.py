"""Headless Chromium for the report tests, driven over the DevTools protocol (websocket-client).

The tests need Debian's ``chromium`` (installed by .ci/run) and are skipped only outside CI when
it is absent (``needs_chromium``).
"""

import json
import os
import shutil
import subprocess
import time
import urllib.request

import pytest

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")
needs_chromium = pytest.mark.skipif(
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

    def evaluate(self, expression: str):
        return self.call("Runtime.evaluate", returnByValue=True, expression=expression)["result"]["value"]


def start_chromium(profile):
    """A headless Chromium with a DevTools server: (process, port)."""
    assert CHROMIUM, "chromium is missing: .ci/run installs it from Debian"
    proc = subprocess.Popen(
        [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--remote-debugging-port=0",
         f"--user-data-dir={profile}", "about:blank"],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    port = None
    end = time.time() + 60
    while port is None and time.time() < end:
        line = proc.stderr.readline()
        if "DevTools listening on ws://" in line:
            port = int(line.split("ws://")[1].split("/")[0].rsplit(":", 1)[1])
    assert port, "chromium did not start its DevTools server"
    return proc, port


def stop_chromium(proc) -> None:
    proc.kill()
    proc.communicate()  # reaps it and closes its stderr pipe


def open_page(port: int, path) -> DevTools:
    """Load the file ``path`` in the browser's page; returns the page's client, events cleared
    before the navigation (so that its errors are the page's)."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/json/list") as response:
        pages = json.loads(response.read())
    page = next(p for p in pages if p["type"] == "page")
    tools = DevTools(page["webSocketDebuggerUrl"])
    for domain in ("Page", "Runtime", "Log"):
        tools.call(f"{domain}.enable")
    tools.events.clear()
    tools.call("Page.navigate", url=path.as_uri())
    tools.wait_for("Page.loadEventFired")
    return tools


def images(tools: DevTools) -> list:
    """``[alt, complete, naturalWidth, naturalHeight]`` of every image of the page."""
    return tools.evaluate("[...document.images].map(i => [i.alt, i.complete, i.naturalWidth, i.naturalHeight])")


def page_errors(tools: DevTools) -> list:
    """The errors the page raised or logged since it was opened."""
    time.sleep(0.5)
    tools.call("Runtime.evaluate", expression="1")  # collect events that arrived meanwhile
    return [
        e for e in tools.events
        if e.get("method") in ("Runtime.exceptionThrown", "Log.entryAdded")
        and (e["method"] == "Runtime.exceptionThrown" or e["params"]["entry"]["level"] == "error")
        or (e.get("method") == "Runtime.consoleAPICalled" and e["params"]["type"] in ("error", "assert"))
    ]  # fmt: skip
