"""`kinema4d view --serve`: rerun's web viewer serves a rollout on 127.0.0.1 only, and headless
Chromium loads it and renders the recording (software WebGL here: no GPU)."""

from __future__ import annotations

import io
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from tests.replay.headless_chromium import CHROMIUM, HeadlessChromium

FRAME_RGB = (24, 220, 64)  # a colour the viewer's own UI never uses
H, W, T = 48, 64, 4


def _rollout_dir(root: Path) -> Path:
    """A tiny rollout folder: solid FRAME_RGB frames, a plane 1 m in front of the camera and a
    robot pointmap on the left quarter."""
    d = root / "episode"
    d.mkdir()
    K = np.array([[50.0, 0, (W - 1) / 2], [0, 50.0, (H - 1) / 2], [0, 0, 1]])
    yy, xx = np.mgrid[0:H, 0:W].astype(np.float32)
    plane = np.stack([(xx - K[0, 2]) / K[0, 0], (yy - K[1, 2]) / K[1, 1], np.ones_like(xx)], -1)
    rgb = np.broadcast_to(np.array(FRAME_RGB, np.uint8), (T, H, W, 3)).copy()
    T_bc = np.eye(4)
    T_bc[:3, :3] = np.diag([1.0, -1.0, -1.0])
    T_bc[2, 3] = 1.2
    np.savez(d / "rollout.npz", rgb=rgb, pointmap=np.repeat(plane[None], T, 0), K=K, T_base_camera=T_bc)
    mask = np.zeros((T, H, W), bool)
    mask[:, :, : W // 4] = True
    np.savez(d / "robot_pointmap.npz", pointmap=np.repeat(plane[None] * 0.8, T, 0), mask=mask)
    return d


def _listening_addresses(pid: int) -> list[str]:
    """host:port of every listening TCP socket of ``pid`` and its descendants (from /proc)."""
    pids, todo = set(), [pid]
    while todo:
        p = todo.pop()
        pids.add(p)
        for task in Path(f"/proc/{p}/task").glob("*"):
            try:
                todo += [int(c) for c in (task / "children").read_text().split()]
            except OSError:
                pass
    inodes = set()
    for p in pids:
        for fd in Path(f"/proc/{p}/fd").glob("*"):
            try:
                m = re.fullmatch(r"socket:\[(\d+)\]", os.readlink(fd))
            except OSError:
                continue
            if m:
                inodes.add(m.group(1))
    out = []
    for table, v6 in (("/proc/net/tcp", False), ("/proc/net/tcp6", True)):
        try:
            lines = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            f = line.split()
            if f[3] != "0A" or f[9] not in inodes:  # 0A = LISTEN
                continue
            addr, port = f[1].split(":")
            if v6:
                host = "::1" if addr == "0" * 24 + "01000000" else ("::" if set(addr) == {"0"} else addr)
            else:
                host = ".".join(str(b) for b in bytes.fromhex(addr)[::-1])
            out.append(f"{host}:{int(port, 16)}")
    return out


@pytest.fixture()
def served(tmp_path):
    """`kinema4d view DIR --serve --port 0` as a subprocess; yields (process, url)."""
    d = _rollout_dir(tmp_path)
    proc = subprocess.Popen([sys.executable, "-m", "kinema4d_core.cli", "view", str(d), "--serve", "--port", "0"],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            env=dict(os.environ, PYTHONPATH=os.getcwd()))
    url, seen = None, []
    deadline = time.monotonic() + 60
    while url is None and time.monotonic() < deadline:
        line = proc.stdout.readline()
        if not line:
            break
        seen.append(line)
        m = re.search(r"open (http://\S+)", line)
        url = m.group(1) if m else None
    try:
        assert url, f"no URL printed: {''.join(seen)}"
        yield proc, url
    finally:
        proc.terminate()
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def test_serve_refuses_a_folder_without_a_rollout(tmp_path, capsys):
    from kinema4d_core.cli import main

    assert main(["view", str(tmp_path), "--serve", "--port", "0"]) == 2
    assert "rollout.npz" in capsys.readouterr().err
    assert main(["view", str(tmp_path)]) == 2  # neither --out nor --serve


def test_serve_binds_loopback_only_and_serves_the_viewer_assets(served):
    import urllib.request

    proc, url = served
    assert url.startswith("http://127.0.0.1:")
    addrs = _listening_addresses(proc.pid)
    assert len(addrs) >= 2 and all(a.startswith("127.0.0.1:") for a in addrs), addrs
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    base = url.split("?")[0].rstrip("/")
    for asset in ("/", "/re_viewer.js", "/re_viewer_bg.wasm"):
        with opener.open(base + asset, timeout=10) as r:
            assert r.status == 200 and len(r.read()) > 1000, asset
    # the process stops cleanly on SIGTERM and takes the server down with it
    proc.terminate()
    assert proc.wait(15) == 0
    assert _listening_addresses(proc.pid) == []


def test_the_served_rerun_cli_runs_with_usage_analytics_off(served):
    """The rerun CLI would send usage data to its vendor by default: ours runs with private
    config folders in which analytics is disabled (the user's own rerun config is untouched)."""
    import json

    proc, _url = served
    children = [int(c) for task in Path(f"/proc/{proc.pid}/task").glob("*")
                for c in (task / "children").read_text().split()]
    rerun_envs = []
    for pid in children:
        if Path(f"/proc/{pid}/exe").resolve().name == "rerun":
            rerun_envs.append(dict(kv.split("=", 1) for kv in
                                   Path(f"/proc/{pid}/environ").read_text().split("\0") if "=" in kv))
    assert len(rerun_envs) == 1, children
    config = Path(rerun_envs[0]["XDG_CONFIG_HOME"]) / "rerun" / "analytics.json"
    assert json.loads(config.read_text())["analytics_enabled"] is False
    assert rerun_envs[0]["XDG_CONFIG_HOME"] != os.environ.get("XDG_CONFIG_HOME")


@pytest.mark.skipif(not Path(CHROMIUM).exists(),
                    reason=f"Chromium is not installed at {CHROMIUM} (KINEMA4D_BROWSER_TESTS=1 scripts/setup_env.sh "
                           "installs it with apt-get; `./run.sh test` sets that)")
def test_headless_chromium_renders_the_served_recording(served):
    from PIL import Image

    proc, url = served
    rendered, shot = False, None
    with HeadlessChromium() as ch:
        ch.open(url)
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline and not rendered:
            time.sleep(2)
            shot = np.asarray(Image.open(io.BytesIO(ch.screenshot())).convert("RGB")).astype(int)
            frame_px = np.all(np.abs(shot - np.array(FRAME_RGB)) <= 12, axis=-1)
            rendered = frame_px.mean() > 0.01  # the generated image (and its point cloud) are on screen
        responses = ch.events_of("Network.responseReceived")
        failed = ch.events_of("Network.loadingFailed")
        requests = {e["requestId"]: e["request"]["url"] for e in ch.events_of("Network.requestWillBeSent")}
        exceptions = ch.events_of("Runtime.exceptionThrown")
        webgl = ch.evaluate("!!document.createElement('canvas').getContext('webgl2')")
        diag = f"chromium log: {ch.log_tail()}"
    assert shot is not None and shot.std() > 5, "blank/uniform screenshot; " + diag
    assert rendered, f"the recording's frame colour never appeared on screen (WebGL2: {webgl}); " + diag
    local = [r["response"] for r in responses if r["response"]["url"].startswith("http://127.0.0.1")]
    urls = {r["url"].split("?")[0].rsplit("/", 1)[-1] for r in local}
    assert {"re_viewer.js", "re_viewer_bg.wasm"} <= urls, urls
    assert all(r["status"] == 200 for r in local), [(r["url"], r["status"]) for r in local if r["status"] != 200]
    local_failures = [(requests.get(f["requestId"]), f["errorText"]) for f in failed
                      if str(requests.get(f["requestId"], "")).startswith("http://127.0.0.1")
                      and not f.get("canceled")]
    assert not local_failures, local_failures  # only outside hosts (fonts, examples) are unreachable
    assert not exceptions, [e["exceptionDetails"].get("text") for e in exceptions]
