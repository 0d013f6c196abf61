"""viewer.serve_rrd error paths that need no browser."""

from __future__ import annotations

import os
import subprocess

import pytest

from kinema4d_core import viewer
from kinema4d_core.errors import InputError


def test_analytics_not_switched_off_is_an_input_error_and_leaves_no_temp_folder(tmp_path, monkeypatch):
    # `rerun analytics disable` exiting 0 without writing its config used to raise FileNotFoundError,
    # and any failure before the server started left the private temp folder behind
    rrd = tmp_path / "r.rrd"
    rrd.write_bytes(b"x")
    made = []
    real_mkdtemp = viewer.tempfile.mkdtemp

    def mkdtemp(**kw):
        made.append(real_mkdtemp(dir=tmp_path, **kw))
        return made[-1]

    monkeypatch.setattr(viewer.tempfile, "mkdtemp", mkdtemp)
    monkeypatch.setattr(viewer.subprocess, "run",
                        lambda *a, **kw: subprocess.CompletedProcess(a, 0, stdout=b"", stderr=b""))
    with pytest.raises(InputError, match="could not switch off the rerun CLI's usage analytics"):
        viewer.serve_rrd(rrd)
    assert made and not any(os.path.exists(p) for p in made)
