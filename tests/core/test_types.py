"""Shared generation types live in kinema4d_core.types: backends and the model pipeline no longer
import each other, and the old import paths still name the same objects."""

import subprocess
import sys

import kinema4d_core.backends as backends
import kinema4d_core.types as types


def test_old_import_paths_name_the_shared_objects():
    assert backends.GenerationRequest is types.GenerationRequest
    assert backends.Cancelled is types.Cancelled
    assert backends.Backend is types.Backend


def _modules_after_import(module: str) -> set[str]:
    code = f"import sys, {module}; print('\\n'.join(m for m in sys.modules if m.startswith('kinema4d_core')))"
    out = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True).stdout
    return set(out.split())


def test_pipeline_does_not_import_backends():
    assert "kinema4d_core.backends" not in _modules_after_import("kinema4d_core.model.pipeline")


def test_backends_do_not_import_the_pipeline_at_import_time():
    assert "kinema4d_core.model.pipeline" not in _modules_after_import("kinema4d_core.backends")
