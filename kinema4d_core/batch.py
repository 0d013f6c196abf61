"""Resumable, idempotent batch running of episode jobs (replay, evaluation, benchmarks).

Each job writes its outputs into ``out_dir/<job>/`` through ``StagedOutput`` and then, last, a
completion marker ``out_dir/<job>/done.json`` (atomic) that records the job's status, its reason
and the FINGERPRINT of its inputs: the episode (bag file identity, time range, frames), the robot
config, the calibration, the backend and its options, the pipeline settings and the code version
(``CODE_VERSION``). A rerun

- skips a job whose marker has the same fingerprint (failed jobs too, unless ``retry_failed``);
- recomputes a job whose fingerprint changed and says which inputs changed (log warning and
  ``recomputed_because`` in its marker); a failure caused by a since-fixed input is therefore
  retried without ``retry_failed``;
- reruns a job killed before its marker was written (nothing partial was left in place), and
  first removes the ``.staging-*`` folders and temporary files a killed run left behind.

``plan_batch`` (what to run) and ``run_job`` (run one job in a staging folder, marker last, then
publish the folder) are what every executor calls (``kinema4d_core.executors``: the local loop,
the default, or Ray); ``run_batch`` plans and hands the plan to the executor.
``report.json`` is rebuilt from the markers.
"""

from __future__ import annotations

import hashlib
import json
import logging
import shutil
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

from kinema4d_core import __version__
from kinema4d_core.errors import InputError, Kinema4DError
from kinema4d_core.io import write_text

log = logging.getLogger("kinema4d.evaluation")

MARKER = "done.json"
REPORT = "report.json"
#: bump when a change makes earlier episode outputs wrong (2: robot rendered at each frame's own stamp)
OUTPUT_FORMAT = 2
CODE_VERSION = f"kinema4d_core {__version__}, outputs v{OUTPUT_FORMAT}"


# ----------------------------------------------------------------------------------------------
# Resumable batch runner
# ----------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Job:
    """One episode to process. ``kind``: "bag" | "robo4d" | "sim"; ``source``: path or spec.

    inputs: (what, identity) of every input besides kind/source/params (bag file, robot config,
    calibration, backend, ...), see ``with_inputs``; part of the job's fingerprint. Plain data:
    jobs pickle (for process pools and Ray).
    """

    name: str
    kind: str
    source: str
    params: dict[str, Any] = field(default_factory=dict)
    inputs: tuple[tuple[str, str], ...] = ()


def _check_job_names(jobs: Sequence[Job]) -> None:
    names = [j.name for j in jobs]
    dup = sorted({n for n in names if names.count(n) > 1})
    if dup:
        raise InputError(f"job names repeat: {dup}", field="jobs", fix="give every episode a unique name")
    bad = [n for n in names if not n or "/" in n or n.startswith(".")]
    if bad:
        raise InputError(f"job names {bad} cannot be folder names", field="jobs",
                         fix="use names without '/' that do not start with '.'")


def read_marker(job_dir: Path) -> dict[str, Any] | None:
    """The completion marker of a job folder, or None if the job has not completed."""
    path = job_dir / MARKER
    if not path.is_file():
        return None
    try:
        return json.loads(path.read_text())
    except (OSError, json.JSONDecodeError):
        return None


# ---- fingerprints ------------------------------------------------------------------------------

def file_identity(path: str | Path) -> str:
    """Content hash (sha256, 16 hex) of a small input file (robot config, URDF, calibration)."""
    p = Path(path)
    if not p.is_file():
        return f"missing: {p}"
    return hashlib.sha256(p.read_bytes()).hexdigest()[:16]


def bag_identity(path: str | Path) -> str:
    """Identity of a (possibly huge) recording without reading it: every file's name, size and
    modification time (a bag folder: all its files)."""
    p = Path(path)
    files = sorted(f for f in p.rglob("*") if f.is_file()) if p.is_dir() else [p]
    h = hashlib.sha256()
    for f in files:
        st = f.stat()
        h.update(f"{f.relative_to(p) if p.is_dir() else f.name}:{st.st_size}:{st.st_mtime_ns};".encode())
    return h.hexdigest()[:16]


def with_inputs(jobs: Sequence[Job], inputs: Mapping[str, Any]) -> list[Job]:
    """The jobs with ``inputs`` (what -> identity; values made text) added to their own."""
    extra = {k: v if isinstance(v, str) else json.dumps(v, sort_keys=True, default=str) for k, v in inputs.items()}
    return [replace(j, inputs=tuple(sorted({**dict(j.inputs), **extra}.items()))) for j in jobs]


def job_inputs(job: Job) -> dict[str, str]:
    """Everything the job's outputs depend on, by name (the parts of the fingerprint)."""
    spec = json.dumps({"kind": job.kind, "source": job.source, "params": job.params}, sort_keys=True, default=str)
    return {"job": spec, **dict(job.inputs), "code": CODE_VERSION}


def job_fingerprint(job: Job) -> str:
    """sha256 (16 hex) over ``job_inputs(job)``."""
    return hashlib.sha256(json.dumps(job_inputs(job), sort_keys=True).encode()).hexdigest()[:16]


def _changed_inputs(marker: dict[str, Any], job: Job) -> list[str]:
    old = marker.get("inputs")
    if not isinstance(old, dict):
        return ["no fingerprint recorded"]
    new = job_inputs(job)
    return sorted(k for k in set(old) | set(new) if old.get(k) != new.get(k)) or ["fingerprint"]


# ---- planning and running ------------------------------------------------------------------------

@dataclass(frozen=True)
class BatchPlan:
    """What a (re)run does: ``todo`` jobs to run, ``reused`` names kept, ``changed`` name -> the
    inputs that changed since the job last ran (those are in ``todo`` too)."""

    todo: tuple[Job, ...]
    reused: tuple[str, ...]
    changed: dict[str, list[str]]


def remove_leftovers(out_dir: Path, jobs: Sequence[Job]) -> int:
    """Remove ``.staging-*`` folders and ``.*.tmp*`` files that a killed run left in ``out_dir``
    and its job folders; returns how many. Call before any job of the batch runs."""
    removed = 0
    dirs = [out_dir] + [out_dir / j.name for j in jobs if (out_dir / j.name).is_dir()]
    for d in dirs:
        for p in list(d.rglob(".staging-*")) + [f for f in d.glob(".*.tmp*") if f.is_file()]:
            if p.is_dir():
                shutil.rmtree(p, ignore_errors=True)
            else:
                p.unlink(missing_ok=True)
            removed += 1
    if removed:
        log.info("batch: removed %d unfinished outputs left by an interrupted run", removed)
    return removed


def plan_batch(jobs: Sequence[Job], out_dir: str | Path, *, retry_failed: bool = False) -> BatchPlan:
    """Decide which jobs run (see the module docstring); logs a warning per job whose inputs changed."""
    out_dir = Path(out_dir)
    _check_job_names(jobs)
    todo, reused, changed = [], [], {}
    for job in jobs:
        marker = read_marker(out_dir / job.name)
        if marker is None:
            todo.append(job)
        elif marker.get("fingerprint") != job_fingerprint(job):
            changed[job.name] = _changed_inputs(marker, job)
            log.warning("episode %s: its inputs changed since it last ran (%s): recomputing", job.name,
                        ", ".join(changed[job.name]))
            todo.append(job)
        elif marker.get("status") == "ok" or not retry_failed:
            reused.append(job.name)
        else:
            todo.append(job)
    return BatchPlan(tuple(todo), tuple(reused), changed)


def run_job(job: Job, out_dir: str | Path, process: Callable[[Job, Path], dict[str, Any]],
            changed: list[str] | None = None) -> dict[str, Any]:
    """Run one job and publish its folder; returns the marker. A ``Kinema4DError`` (or any other
    exception) fails the job with its reason; KeyboardInterrupt/SystemExit propagate.

    The job runs in a staging folder ``out_dir/.staging-job-<name>-*`` (``process`` gets it as
    ``job_dir``) with its marker written there last; then the staging folder replaces
    ``out_dir/<name>`` by renames. A process killed at any point (a Ray worker under SIGKILL)
    therefore leaves the previous folder (or none) in place and the job pending, never a
    half-written folder; ``remove_leftovers`` deletes the staging folder of the next run.
    """
    import tempfile

    out_dir = Path(out_dir)
    job_dir = out_dir / job.name
    out_dir.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".staging-job-{job.name}-", dir=out_dir))
    t0 = time.monotonic()
    base = {"name": job.name, "kind": job.kind, "source": job.source}
    try:
        try:
            info = process(job, staging) or {}
            marker = {**base, "status": "ok", "reason": None, **info}
        except Kinema4DError as exc:
            marker = {**base, "status": "failed", "reason": str(exc)}
        except (KeyboardInterrupt, SystemExit):
            raise
        except Exception as exc:  # an unexpected bug must not sink the other episodes
            log.exception("job %s crashed", job.name)
            marker = {**base, "status": "failed", "reason": f"unexpected {type(exc).__name__}: {exc}"}
        marker["seconds"] = round(time.monotonic() - t0, 3)
        marker["fingerprint"] = job_fingerprint(job)
        marker["inputs"] = job_inputs(job)
        if changed:
            marker["recomputed_because"] = list(changed)
        write_text(staging / MARKER, json.dumps(_jsonable(marker), indent=2))
        _publish(staging, job_dir)
    finally:
        if staging.exists():
            shutil.rmtree(staging, ignore_errors=True)
    log.info("episode %s: %s%s (%.1f s)", job.name, marker["status"],
             f" - {marker['reason']}" if marker["reason"] else "", marker["seconds"])
    return marker


def _publish(staging: Path, job_dir: Path) -> None:
    """Replace ``job_dir`` by the complete ``staging`` folder (two renames; the old folder is
    moved aside first, so at no moment is a partial folder at ``job_dir``)."""
    import os

    old = None
    if job_dir.exists():
        old = job_dir.with_name(f".staging-old-{job_dir.name}-{os.getpid()}-{time.monotonic_ns()}")
        os.replace(job_dir, old)
    os.replace(staging, job_dir)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def run_batch(jobs: Sequence[Job], out_dir: str | Path, process: Callable[[Job, Path], dict[str, Any]], *,
              retry_failed: bool = False, progress: bool = True, extra_report: dict[str, Any] | None = None,
              executor: Any = None) -> dict[str, Any]:
    """Run ``process(job, job_dir)`` for every job not yet completed with its current inputs;
    return the batch report.

    ``process`` writes its outputs under ``job_dir`` and returns a JSON-able dict stored in the
    marker. A ``Kinema4DError`` (or any other exception) fails that job alone with its reason;
    KeyboardInterrupt stops the batch (completed jobs stay). ``executor``: who runs the planned
    jobs (``kinema4d_core.executors``: ``LocalExecutor``, the default, or ``RayExecutor``, which
    needs ``process`` to be a picklable object, not a closure); planning, leftovers and the
    report are the same for all.
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    _check_job_names(jobs)
    remove_leftovers(out_dir, jobs)
    plan = plan_batch(jobs, out_dir, retry_failed=retry_failed)
    log.info("batch: %d jobs, %d already complete, %d to run (%d with changed inputs)", len(jobs),
             len(plan.reused), len(plan.todo), len(plan.changed))
    if executor is None:
        from kinema4d_core.executors import LocalExecutor

        executor = LocalExecutor()
    executor.execute(plan, out_dir, process, progress=progress, total=len(jobs))
    return write_batch_report(jobs, out_dir, extra_report)


def job_staging_pattern(name: str) -> str:
    """Glob (in the batch folder) of the staging folders of job ``name`` (``run_job``)."""
    return f".staging-job-{name}-" + "?" * 8


def write_batch_report(jobs: Sequence[Job], out_dir: Path, extra: dict[str, Any] | None = None) -> dict[str, Any]:
    """Collect every job's marker into ``out_dir/report.json`` (jobs without one: "pending")."""
    episodes = []
    for job in jobs:
        marker = read_marker(out_dir / job.name) or {"name": job.name, "kind": job.kind, "source": job.source,
                                                      "status": "pending", "reason": "not run yet"}
        episodes.append(marker)
    counts: dict[str, int] = {}
    for e in episodes:
        counts[e["status"]] = counts.get(e["status"], 0) + 1
    report = {"episodes": episodes, "counts": counts, **(extra or {})}
    write_text(out_dir / REPORT, json.dumps(_jsonable(report), indent=2))
    return report


def _jsonable(value: Any) -> Any:
    from kinema4d_core.metrics import jsonable

    return jsonable(value)
