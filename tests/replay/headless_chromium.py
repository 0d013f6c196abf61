"""A minimal headless-Chromium driver for the browser tests: the Chrome DevTools protocol over
``--remote-debugging-pipe`` (fds 3/4, NUL-separated JSON), so no websocket library, no open
debugging port and nothing to install besides /usr/bin/chromium.

Every host other than 127.0.0.1/localhost resolves to NOTFOUND, so a page can never reach out.
"""

from __future__ import annotations

import base64
import json
import os
import shutil
import subprocess
import tempfile
import threading
import time
from typing import Any

CHROMIUM = "/usr/bin/chromium"

FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         # no GPU here: WebGPU finds no adapter, so rerun's wgpu falls back to WebGL2, which
         # Chromium only provides in software (SwiftShader) when this flag opts in
         "--enable-unsafe-swiftshader",
         "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1, EXCLUDE localhost",
         "--window-size=1280,800", "--hide-scrollbars", "--mute-audio"]


class CDPError(RuntimeError):
    pass


class HeadlessChromium:
    """``with HeadlessChromium() as ch: ch.open(url); ch.screenshot()``; ``ch.events`` holds every
    protocol event of the page (Network.*, Runtime.*, Log.*)."""

    def __init__(self, exe: str = CHROMIUM, extra_flags: tuple[str, ...] = ()):
        self.user_data_dir = tempfile.mkdtemp(prefix="kinema4d-chromium-")
        to_chrome_r, self._to_chrome_w = os.pipe()
        self._from_chrome_r, from_chrome_w = os.pipe()

        def _child_fds() -> None:  # the pipe ends become fds 3 (commands) and 4 (replies)
            a, b = os.dup(to_chrome_r), os.dup(from_chrome_w)
            os.dup2(a, 3)
            os.dup2(b, 4)
            os.set_inheritable(3, True)
            os.set_inheritable(4, True)

        self.stderr_path = os.path.join(self.user_data_dir, "chromium.log")
        with open(self.stderr_path, "wb") as err:
            self.process = subprocess.Popen(
                [exe, *FLAGS, f"--user-data-dir={self.user_data_dir}", "--remote-debugging-pipe", *extra_flags,
                 "about:blank"], stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=err,
                close_fds=False, preexec_fn=_child_fds)
        os.close(to_chrome_r)
        os.close(from_chrome_w)
        self._next_id = 0
        self._replies: dict[int, dict[str, Any]] = {}
        self._lock = threading.Condition()
        self.events: list[dict[str, Any]] = []
        self.session: str | None = None
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        buf = b""
        while True:
            try:
                chunk = os.read(self._from_chrome_r, 1 << 20)
            except OSError:
                break
            if not chunk:
                break
            buf += chunk
            while b"\0" in buf:
                raw, buf = buf.split(b"\0", 1)
                msg = json.loads(raw)
                with self._lock:
                    if "id" in msg:
                        self._replies[msg["id"]] = msg
                    else:
                        self.events.append(msg)
                    self._lock.notify_all()
        with self._lock:
            self._lock.notify_all()

    def send(self, method: str, params: dict[str, Any] | None = None, *, page: bool = True,
             timeout: float = 60.0) -> dict[str, Any]:
        with self._lock:
            self._next_id += 1
            msg_id = self._next_id
        msg: dict[str, Any] = {"id": msg_id, "method": method, "params": params or {}}
        if page and self.session:
            msg["sessionId"] = self.session
        os.write(self._to_chrome_w, json.dumps(msg).encode() + b"\0")
        deadline = time.monotonic() + timeout
        with self._lock:
            while msg_id not in self._replies:
                left = deadline - time.monotonic()
                if left <= 0 or self.process.poll() is not None:
                    raise CDPError(f"{method}: no reply (chromium {'exited' if self.process.poll() is not None else 'timed out'}); "
                                   f"log: {self.log_tail()}")
                self._lock.wait(min(left, 0.5))
            reply = self._replies.pop(msg_id)
        if "error" in reply:
            raise CDPError(f"{method}: {reply['error']}")
        return reply.get("result", {})

    def open(self, url: str) -> None:
        """A new page with Page/Runtime/Network/Log events on, navigated to ``url``."""
        target = self.send("Target.createTarget", {"url": "about:blank"}, page=False)["targetId"]
        self.session = self.send("Target.attachToTarget", {"targetId": target, "flatten": True},
                                 page=False)["sessionId"]
        for domain in ("Page", "Runtime", "Network", "Log"):
            self.send(f"{domain}.enable")
        self.send("Page.navigate", {"url": url})

    def evaluate(self, expression: str) -> Any:
        return self.send("Runtime.evaluate", {"expression": expression, "returnByValue": True})["result"].get("value")

    def screenshot(self) -> bytes:
        return base64.b64decode(self.send("Page.captureScreenshot", {"format": "png"})["data"])

    def events_of(self, method: str) -> list[dict[str, Any]]:
        with self._lock:
            return [e["params"] for e in self.events if e.get("method") == method]

    def log_tail(self, n: int = 1500) -> str:
        try:
            with open(self.stderr_path, "rb") as f:
                return f.read().decode(errors="replace")[-n:]
        except OSError:
            return ""

    def close(self) -> None:
        if self.process.poll() is None:
            try:
                self.send("Browser.close", page=False, timeout=5)
            except CDPError:
                pass
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(10)
        for fd in (self._to_chrome_w, self._from_chrome_r):
            try:
                os.close(fd)
            except OSError:
                pass
        shutil.rmtree(self.user_data_dir, ignore_errors=True)

    def __enter__(self) -> "HeadlessChromium":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
