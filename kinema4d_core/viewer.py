"""4D viewing without RViz: a rollout as a rerun recording (.rrd).

Entities (timeline ``frame``, one step per generated frame; world = robot base frame, metres):
- ``world/camera``: the camera pose T_base_camera (static; the camera optical frame, RDF);
- ``world/camera/image``: the generated RGB frame with its pinhole (K), so the viewer draws the
  frustum at the camera pose and the image on its image plane;
- ``world/camera/points``: the generated metric pointmap as a point cloud in the camera frame,
  coloured by the generated RGB (subsampled to ``max_points``);
- ``world/camera/robot``: the robot pointmap (condition), if given, in orange;
- ``ground_truth/image``: ground-truth RGB image (if given).
The point clouds are siblings of the pinhole entity, not children: rerun treats everything below
a pinhole as 2D image content, which would hide 3D points from the 3D view.

Open with ``rerun FILE.rrd``, or serve it to a browser with ``serve_rrd`` (the web viewer bundled
in rerun-sdk, bound to 127.0.0.1 only). ``read_rrd_summary`` reads a recording back.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any

import numpy as np

from kinema4d_core.errors import InputError
from kinema4d_core.io import atomic_path
from kinema4d_core.procs import die_with_parent
from kinema4d_core.rollout import frame_points

ROBOT_COLOR = (255, 140, 0)


def write_rollout_rrd(path: str | os.PathLike, rollout: Any, *, robot_pointmap: np.ndarray | None = None,
                      robot_mask: np.ndarray | None = None, ground_truth_rgb: np.ndarray | None = None,
                      max_points: int = 30000, application_id: str = "kinema4d") -> None:
    """Record a rollout (``rgb`` (T,H,W,3) u8, ``pointmap`` (T,H,W,3) metres camera frame, ``K``,
    ``T_base_camera``) into ``path`` atomically.

    robot_pointmap: (T,H,W,3) camera-frame metres with ``robot_mask`` (T,H,W) bool, optional.
    """
    import rerun as rr

    rgb = np.asarray(rollout.rgb)
    pm = np.asarray(rollout.pointmap, np.float32)
    if rgb.ndim != 4 or pm.shape[:3] != rgb.shape[:3]:
        raise InputError(f"rgb {rgb.shape} and pointmap {pm.shape} do not match", field="rollout",
                         fix="pass a rollout with per-frame RGB and pointmaps of the same size")
    K = np.asarray(rollout.K, np.float64)
    T = np.asarray(rollout.T_base_camera, np.float64)
    h, w = rgb.shape[1:3]
    with atomic_path(path) as tmp:
        rec = rr.RecordingStream(application_id, send_properties=False)
        rec.save(str(tmp))
        rec.log("world", rr.ViewCoordinates.RIGHT_HAND_Z_UP, static=True)
        rec.log("world/camera", rr.Transform3D(translation=T[:3, 3], mat3x3=T[:3, :3]), static=True)
        pinhole = rr.Pinhole(image_from_camera=K, width=w, height=h, camera_xyz=rr.ViewCoordinates.RDF)
        for t in range(rgb.shape[0]):
            rec.set_time("frame", sequence=t)
            # one row per frame: the pinhole travels with the image (one log call, one row)
            rec.log("world/camera/image", pinhole, rr.Image(rgb[t]))
            pts, cols = frame_points(pm[t], rgb[t], max_points)
            rec.log("world/camera/points", rr.Points3D(pts, colors=cols, radii=0.002))
            if robot_pointmap is not None:
                rp = np.asarray(robot_pointmap[t], np.float32)
                if robot_mask is not None:
                    rp = np.where(np.asarray(robot_mask[t], bool)[..., None], rp, np.nan)
                rpts, _ = frame_points(rp, None, max_points)
                rec.log("world/camera/robot", rr.Points3D(rpts, colors=ROBOT_COLOR, radii=0.002))
            if ground_truth_rgb is not None and t < len(ground_truth_rgb):
                rec.log("ground_truth/image", rr.Image(np.asarray(ground_truth_rgb[t], np.uint8)))
        rec.flush()
        rec.disconnect()


def read_rrd_summary(path: str | os.PathLike) -> dict[str, int]:
    """Entity path -> number of logged rows in the first recording of an .rrd file."""
    from rerun.chunk import RrdReader

    if not Path(path).is_file():
        raise InputError(f"{path} does not exist", field="rrd", fix="write it with `kinema4d view`")
    counts: dict[str, int] = {}
    for chunk in RrdReader(path).stream():
        counts[chunk.entity_path] = counts.get(chunk.entity_path, 0) + chunk.num_rows
    return counts


# ----------------------------------------------------------------------------------------------
# Serving a recording to a browser (rerun's bundled web viewer), loopback only
# ----------------------------------------------------------------------------------------------

LOOPBACK = "127.0.0.1"


def rerun_executable() -> Path:
    """The ``rerun`` CLI binary shipped in the rerun-sdk wheel (package ``rerun_cli``)."""
    try:
        import rerun_cli

        exe = Path(rerun_cli.__file__).parent / "rerun"
        if exe.is_file():
            return exe
    except ImportError:
        pass
    found = shutil.which("rerun", path=os.pathsep.join([str(Path(sys.executable).parent),
                                                        os.environ.get("PATH", "")]))
    if found:
        return Path(found)
    raise InputError("the rerun CLI is not installed", field="rerun-sdk",
                     fix="install the pinned requirements (scripts/setup_env.sh)")


def free_port() -> int:
    """A TCP port that is free on 127.0.0.1 right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((LOOPBACK, 0))
        return int(s.getsockname()[1])


def _port_open(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.settimeout(0.5)
        return s.connect_ex((LOOPBACK, port)) == 0


class WebViewer:
    """A running ``rerun --serve-web`` process serving one recording on 127.0.0.1.

    ``url`` opens the web viewer connected to the recording; ``web_port`` serves the viewer's
    HTML/JS/wasm, ``grpc_port`` the recording (rerun's message proxy). Use as a context manager
    or call ``stop()``.
    """

    def __init__(self, process: subprocess.Popen, web_port: int, grpc_port: int, log_path: Path,
                 tmp_dir: Path | None = None):
        self.process = process
        self.web_port = web_port
        self.grpc_port = grpc_port
        self.log_path = log_path
        self._tmp_dir = tmp_dir

    @property
    def grpc_url(self) -> str:
        return f"rerun+http://{LOOPBACK}:{self.grpc_port}/proxy"

    @property
    def url(self) -> str:
        return f"http://{LOOPBACK}:{self.web_port}/?url={urllib.parse.quote(self.grpc_url, safe='')}"

    def log_tail(self, n: int = 2000) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-n:]
        except OSError:
            return ""

    def running(self) -> bool:
        return self.process.poll() is None

    def wait(self) -> int:
        return self.process.wait()

    def stop(self, timeout: float = 5.0) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout)
        if self._tmp_dir is not None:
            shutil.rmtree(self._tmp_dir, ignore_errors=True)
            self._tmp_dir = None

    def __enter__(self) -> "WebViewer":
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def _private_rerun_env(home: Path) -> dict[str, str]:
    """Environment for the rerun CLI with its own config/data folders and usage analytics off.

    The rerun CLI sends anonymous usage data to its vendor by default; this project sends nothing
    beyond loopback. Giving the CLI private XDG folders in which `rerun analytics disable` has
    been run turns that off without touching the user's own rerun configuration.
    """
    env = dict(os.environ, XDG_CONFIG_HOME=str(home / "config"), XDG_DATA_HOME=str(home / "data"))
    try:
        done = subprocess.run([str(rerun_executable()), "analytics", "disable"], env=env, stdin=subprocess.DEVNULL,
                              capture_output=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise InputError(f"could not run `rerun analytics disable`: {type(exc).__name__}: {exc}",
                         field="rerun analytics", fix="check the rerun-sdk installation") from exc
    config = home / "config" / "rerun" / "analytics.json"
    disabled = config.is_file() and '"analytics_enabled":false' in config.read_text().replace(" ", "")
    if done.returncode != 0 or not disabled:
        raise InputError("could not switch off the rerun CLI's usage analytics: "
                         f"{(done.stderr or done.stdout).decode(errors='replace')[-300:]}",
                         field="rerun analytics", fix="check the rerun-sdk installation")
    return env


def serve_rrd(path: str | os.PathLike, *, web_port: int = 0, grpc_port: int = 0, startup_timeout: float = 30.0,
              server_memory_limit: str | None = None) -> WebViewer:
    """Serve the rerun web viewer with the recording ``path`` on 127.0.0.1 (never another interface).

    Runs the rerun CLI of the installed rerun-sdk (``rerun --serve-web --bind 127.0.0.1``): it
    hosts the web viewer assets bundled in the wheel over HTTP on ``web_port`` and the recording
    on a gRPC proxy on ``grpc_port`` (0: a free port each). Returns once both answer; raises
    ``InputError`` with the server's log if it does not start (e.g. a port is taken).
    """
    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path} does not exist", field="rrd", fix="write it with `kinema4d view --out`")
    for name, port in (("--port", web_port), ("--grpc-port", grpc_port)):
        if not 0 <= int(port) <= 65535:
            raise InputError(f"port {port} is out of range", field=name, fix="use 1-65535, or 0 for a free port")
    web_port = int(web_port) or free_port()
    grpc_port = int(grpc_port) or free_port()
    while grpc_port == web_port:
        grpc_port = free_port()
    for name, port in (("--port", web_port), ("--grpc-port", grpc_port)):
        if _port_open(port):
            raise InputError(f"port {port} on {LOOPBACK} is already in use", field=name,
                             fix="pick another port, or 0 for a free one")
    if server_memory_limit is None:  # the proxy must hold the whole recording for late viewers
        server_memory_limit = f"{max(1024, 2 * (path.stat().st_size >> 20) + 256)}MiB"
    tmp_dir = Path(tempfile.mkdtemp(prefix="kinema4d-view-"))
    log_path = tmp_dir / "rerun.log"
    try:
        env = _private_rerun_env(tmp_dir)
        cmd = [str(rerun_executable()), "--serve-web", "--bind", LOOPBACK, "--web-viewer-port", str(web_port),
               "--port", str(grpc_port), "--server-memory-limit", server_memory_limit, str(path.resolve())]
        with open(log_path, "wb") as log_file:
            proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=log_file, stderr=subprocess.STDOUT,
                                    cwd=tmp_dir, env=env,
                                    preexec_fn=die_with_parent())
    except BaseException:  # no server was started: remove its private folder
        shutil.rmtree(tmp_dir, ignore_errors=True)
        raise
    viewer = WebViewer(proc, web_port, grpc_port, log_path, tmp_dir)
    deadline = time.monotonic() + startup_timeout
    while True:
        if proc.poll() is not None:
            tail = viewer.log_tail()
            viewer.stop()
            raise InputError(f"the rerun web viewer exited with status {proc.returncode}: {tail.strip()[-600:]}",
                             field="rerun --serve-web", fix="check the ports are free and the .rrd file is valid")
        if _port_open(grpc_port) and _http_ok(f"http://{LOOPBACK}:{web_port}/"):
            return viewer
        if time.monotonic() > deadline:
            tail = viewer.log_tail()
            viewer.stop()
            raise InputError(f"the rerun web viewer did not answer within {startup_timeout:.0f} s: "
                             f"{tail.strip()[-600:]}", field="rerun --serve-web", fix="see the log above")
        time.sleep(0.1)


def _http_ok(url: str) -> bool:
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))  # loopback: never via a proxy
    try:
        with opener.open(url, timeout=2) as r:
            return r.status == 200
    except OSError:
        return False
