"""Drive `ftune serve`'s chat page in headless Chromium over the DevTools protocol: pick a model,
type a message, press send, wait for the streamed reply to appear, and save a screenshot.

    python scripts/chat_page_check.py http://127.0.0.1:8000 MODEL "Give three tips" out.png [--key KEY]

Prints the reply the page shows; exits 1 when none appears within the timeout.
"""

from __future__ import annotations

import argparse
import base64
import json
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from itertools import count
from urllib.parse import quote


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Page:
    def __init__(self, socket):
        self.socket = socket
        self.ids = count(1)

    def call(self, method: str, **params):
        ident = next(self.ids)
        self.socket.send(json.dumps({"id": ident, "method": method, "params": params}))
        while True:
            message = json.loads(self.socket.recv())
            if message.get("id") == ident:
                if "error" in message:
                    raise RuntimeError(f"{method}: {message['error']}")
                return message.get("result", {})

    def evaluate(self, expression: str):
        result = self.call("Runtime.evaluate", expression=expression, awaitPromise=True, returnByValue=True)
        return result.get("result", {}).get("value")


def check(server: str, model: str, text: str, screenshot: str, key: str = "", timeout: float = 120) -> str:
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if chromium is None:
        raise SystemExit("chat_page_check: Chromium not found; install it: apt-get install -y chromium")
    port = free_port()
    # Chromium's helper processes can still be writing the profile when the browser has exited:
    # a leftover file must not fail the check (seen once in CI: "Directory not empty: 'Default'")
    with tempfile.TemporaryDirectory(prefix="ftune-chromium-", ignore_cleanup_errors=True) as profile:
        browser = subprocess.Popen([chromium, "--headless=new", "--no-sandbox", "--disable-gpu",
                                    f"--user-data-dir={profile}", f"--remote-debugging-port={port}",
                                    "--window-size=900,700", "about:blank"],
                                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            deadline = time.monotonic() + 30
            while True:
                try:
                    targets = json.loads(urllib.request.urlopen(f"http://127.0.0.1:{port}/json/list").read())
                    target = next(t for t in targets if t["type"] == "page")
                    break
                except (OSError, StopIteration):
                    if time.monotonic() > deadline:
                        raise SystemExit("chat_page_check: Chromium did not open its DevTools port") from None
                    time.sleep(0.2)
            from websockets.sync.client import connect

            with connect(target["webSocketDebuggerUrl"], max_size=None) as socket:
                page = Page(socket)
                page.call("Page.enable")
                page.call("Page.navigate", url=server.rstrip("/") + "/" + (f"?key={quote(key)}" if key else ""))
                until(lambda: page.evaluate("document.readyState") == "complete", 30)
                until(lambda: page.evaluate(f"[...document.getElementById('model').options].some(o => o.value === "
                                            f"{json.dumps(model)})"), 30)
                page.evaluate(f"document.getElementById('model').value = {json.dumps(model)};"
                              f"document.getElementById('message').value = {json.dumps(text)};"
                              "document.getElementById('send').click()")
                until(lambda: page.evaluate("(document.querySelector('.turn.assistant') || {}).textContent"), timeout)
                time.sleep(1.0)  # let a few more chunks arrive for the picture
                reply = page.evaluate("document.querySelector('.turn.assistant').textContent")
                png = page.call("Page.captureScreenshot", format="png")["data"]
                with open(screenshot, "wb") as out:
                    out.write(base64.b64decode(png))
                return reply
        finally:
            browser.terminate()
            browser.wait(timeout=30)


def until(probe, timeout: float):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = probe()
        if value:
            return value
        time.sleep(0.2)
    raise SystemExit(f"chat_page_check: timed out after {timeout:.0f} s")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("server")
    parser.add_argument("model")
    parser.add_argument("text")
    parser.add_argument("screenshot")
    parser.add_argument("--key", default="")
    args = parser.parse_args(argv)
    print(check(args.server, args.model, args.text, args.screenshot, args.key))
    return 0


if __name__ == "__main__":
    sys.exit(main())
