"""Output that is never partial: write to a temporary name in the same folder, then rename.

- ``atomic_path(final)``: context manager yielding a temp path; renamed onto ``final`` only if the
  block succeeds, deleted otherwise.
- ``StagedOutput(out_dir)``: for multi-file outputs. Files are written into a hidden staging
  folder inside ``out_dir`` and moved into place together when the block succeeds; on failure
  nothing in ``out_dir`` changes.
- ``save_npz``, ``write_text``, ``write_mp4``: atomic single-file writers.
- ``read_yaml(path, ...)``: a YAML file's content, or a ConfigError naming the field.
- ``cache_dir(name)``: the on-disk cache folder shared by the mesh caches (or None when disabled).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
import zipfile
from pathlib import Path
from typing import Any, Iterator, Mapping

import numpy as np

from kinema4d_core.errors import ConfigError


def _read_umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


# Read once at import: os.umask is process-wide, so toggling it later could race with other threads.
_UMASK = _read_umask()


def cache_dir(name: str) -> Path | None:
    """Cache sub-folder ``name`` of ``$KINEMA4D_CACHE_DIR`` (default ``~/.cache/kinema4d``).

    Returns None when caching is disabled (``KINEMA4D_CACHE_DIR`` set to ``off``, ``0``, ``none``
    or empty). The folder is not created here.
    """
    root = os.environ.get("KINEMA4D_CACHE_DIR", "~/.cache/kinema4d")
    if root.strip().lower() in ("", "off", "0", "none"):
        return None
    return Path(root).expanduser() / name


@contextlib.contextmanager
def atomic_path(final: str | os.PathLike, *, backup: bool = False) -> Iterator[Path]:
    """Yield a temporary path beside ``final``; rename it to ``final`` when the block succeeds.

    backup: keep the previous ``final`` as ``final + '.bak'`` (used for calibration files).
    """
    final = Path(final)
    final.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{final.name}.", suffix=".tmp" + final.suffix, dir=final.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        if not tmp_path.exists() or tmp_path.stat().st_size == 0:
            raise OSError(f"nothing was written for {final}")
        if backup and final.exists():
            shutil.copy2(final, final.with_name(final.name + ".bak"))
        # mkstemp creates 0600 files; give outputs the usual permissions (0666 less the umask).
        os.chmod(tmp_path, 0o666 & ~_UMASK)
        os.replace(tmp_path, final)
    finally:
        if tmp_path.exists():
            tmp_path.unlink()


class StagedOutput:
    """Stage several output files and publish them into ``out_dir`` all at once.

    >>> with StagedOutput(out) as st:
    ...     np.savez(st.path("a.npz"), x=1)
    ...     write_mp4(st.path("v.mp4"), frames)
    # now out/a.npz and out/v.mp4 exist; had anything raised, out/ would be unchanged.
    """

    def __init__(self, out_dir: str | os.PathLike):
        self.out_dir = Path(out_dir)
        self._staging: Path | None = None
        self._names: list[str] = []

    def __enter__(self) -> "StagedOutput":
        self.out_dir.mkdir(parents=True, exist_ok=True)
        self._staging = Path(tempfile.mkdtemp(prefix=".staging-", dir=self.out_dir))
        return self

    def path(self, name: str) -> Path:
        """Temporary path for output file ``name`` (relative, may contain sub-folders)."""
        assert self._staging is not None, "use StagedOutput as a context manager"
        p = self._staging / name
        p.parent.mkdir(parents=True, exist_ok=True)
        if name not in self._names:
            self._names.append(name)
        return p

    def __exit__(self, exc_type, exc, tb) -> None:
        assert self._staging is not None
        try:
            if exc_type is None:
                missing = [n for n in self._names if not (self._staging / n).exists()]
                if missing:
                    raise OSError(f"staged outputs were never written: {missing}")
                for name in self._names:
                    dst = self.out_dir / name
                    dst.parent.mkdir(parents=True, exist_ok=True)
                    os.replace(self._staging / name, dst)
        finally:
            shutil.rmtree(self._staging, ignore_errors=True)


def write_npz(path: str | os.PathLike, arrays: Mapping[str, np.ndarray], *, compresslevel: int | None = 1) -> None:
    """Write an .npz (readable by ``np.load``) to ``path`` (not atomic: use inside StagedOutput/atomic_path).

    compresslevel: zlib level 1..9, or None for no compression. Level 1 is ~5x faster than
    ``np.savez_compressed`` (level 6) on 480x720x49 float pointmaps for a few percent more bytes.
    """
    compression = zipfile.ZIP_STORED if compresslevel is None else zipfile.ZIP_DEFLATED
    with zipfile.ZipFile(path, "w", compression=compression, compresslevel=compresslevel,
                         allowZip64=True) as zf:
        for name, value in arrays.items():
            with zf.open(f"{name}.npy", "w", force_zip64=True) as member:
                np.lib.format.write_array(member, np.asanyarray(value), allow_pickle=False)


def save_npz(path: str | os.PathLike, arrays: Mapping[str, np.ndarray], *, compressed: bool = True) -> None:
    """Atomically write an .npz file (fast deflate when ``compressed``)."""
    with atomic_path(path) as tmp:
        write_npz(tmp, arrays, compresslevel=1 if compressed else None)


def write_text(path: str | os.PathLike, text: str) -> None:
    """Atomically write a text file."""
    with atomic_path(path) as tmp:
        tmp.write_text(text)


def write_mp4(path: str | os.PathLike, frames: np.ndarray, fps: float = 12.0, *, quality: int = 8) -> None:
    """Atomically write (T, H, W, 3) uint8 RGB frames as an H.264 mp4 (yuv420p).

    Width and height must be even (H.264 with yuv420p); odd sizes are padded by one pixel of
    edge replication rather than silently rescaled.
    """
    import imageio.v2 as imageio

    frames = np.asarray(frames)
    if frames.ndim != 4 or frames.shape[-1] != 3 or frames.dtype != np.uint8:
        raise ValueError(f"write_mp4 expects (T,H,W,3) uint8 frames, got {frames.shape} {frames.dtype}")
    pad_h, pad_w = frames.shape[1] % 2, frames.shape[2] % 2
    if pad_h or pad_w:
        frames = np.pad(frames, ((0, 0), (0, pad_h), (0, pad_w), (0, 0)), mode="edge")
    with atomic_path(path) as tmp:
        writer = imageio.get_writer(str(tmp), format="FFMPEG", fps=fps, codec="libx264", quality=quality,
                                    pixelformat="yuv420p", macro_block_size=1,
                                    ffmpeg_log_level="error")
        try:
            for frame in frames:
                writer.append_data(frame)
        finally:
            writer.close()


def read_mp4(path: str | os.PathLike) -> np.ndarray:
    """Read an mp4 into (T, H, W, 3) uint8."""
    import imageio.v2 as imageio

    reader = imageio.get_reader(str(path), format="FFMPEG")
    try:
        return np.stack([np.asarray(f) for f in reader])
    finally:
        reader.close()


def read_yaml(path: str | os.PathLike, *, field: str, what: str = "file", fix: str = "check the path") -> Any:
    """The parsed content of the YAML file ``path``.

    ConfigError naming ``field`` when the file does not exist (``"<what> <path> does not exist"``,
    with ``fix``) or is not valid YAML. Checking the content's structure is the caller's job.
    """
    import yaml

    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{what} {path} does not exist", field=field, fix=fix)
    try:
        return yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path} is not valid YAML ({exc})", field=field, fix="fix the YAML syntax") from None
