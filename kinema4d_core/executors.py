"""Who runs the planned jobs of a batch (``batch.run_batch(..., executor=...)``).

- ``LocalExecutor`` (the default): the jobs one after another in this process. Never imports Ray.
- ``RayExecutor``: the jobs on a Ray cluster (``pip install ray``, pinned in requirements/). One
  actor per model replica, each with its own resources (``num_gpus``/``num_cpus`` per worker); an
  actor holds one ``Resources``, so a backend (model weights) is loaded once per actor on its
  first episode, never per episode. Episodes are actor tasks handed to idle actors. An actor
  that dies (SIGKILL, out of memory, node lost) is replaced and its episode requeued, unless
  its completion marker shows it finished; after ``max_attempts`` deaths on one episode that
  episode fails with the reason (the rest of the study goes on). Progress covers the whole
  study (reused jobs count as done).

Both call ``batch.run_job`` (staging folder, marker last, then publish), so outputs, markers and
the report are identical; a rerun with either executor reuses what either completed. The batch
folder must be visible at the same path to the driver and every worker (one host, or a shared
file system on a multi-node cluster).

Network: a private cluster (no ``address``) binds to 127.0.0.1 only (``LOOPBACK_ENV``), with
usage stats, dashboard and metrics export off and token authentication with a secret of this run
(no token file under ~/.ray); ``address`` joins an existing cluster (started with ``ray start``,
see docs/batch-evaluation.md).
"""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
from collections import deque
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from kinema4d_core.batch import BatchPlan, Job, job_fingerprint, job_staging_pattern, read_marker, run_job
from kinema4d_core.errors import ConfigError, Kinema4DError

log = logging.getLogger("kinema4d.evaluation")

Process = Callable[[Job, Path], dict[str, Any]]

#: loopback: every Ray process we start binds here (the project never leaves the host)
LOOPBACK = "127.0.0.1"
#: object store of a private cluster: jobs pass only small data (paths, markers) through it
OBJECT_STORE_BYTES = 200_000_000


class LocalExecutor:
    """Run the planned jobs in this process, in order (no Ray)."""

    def execute(self, plan: BatchPlan, out_dir: Path, process: Process, *, progress: bool = True,
                total: int | None = None) -> None:
        from tqdm import tqdm

        total = len(plan.todo) if total is None else total
        bar = tqdm(total=total, initial=total - len(plan.todo), desc="episodes", unit="ep",
                   disable=not progress, leave=False)
        try:
            for job in plan.todo:
                bar.set_postfix_str(job.name)
                run_job(job, out_dir, process, plan.changed.get(job.name))
                bar.update(1)
        finally:
            bar.close()


#: RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0: Ray (2.60) otherwise "resolves" 127.0.0.1 / localhost in
#: --node-ip-address, ray.init(_node_ip_address=...) and cluster addresses to the host's routable
#: address (ray._private.services.resolve_ip_for_localhost -> node_ip_address_from_perspective),
#: and its servers then listen on every interface. With it, 127.0.0.1 stays 127.0.0.1 and the GCS,
#: raylet, object manager and agents listen on 127.0.0.1 only. Real addresses are not affected.
LOOPBACK_ENV = {"RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0",
                "RAY_USAGE_STATS_ENABLED": "0",
                "RAY_USAGE_STATS_PROMPT_ENABLED": "0",
                "RAY_enable_metrics_collection": "0",
                "RAY_DISABLE_DOCKER_CPU_WARNING": "1"}


def ray_env(temp_dir: str | os.PathLike | None = None, token: str | None = None) -> dict[str, str]:
    """Environment for Ray processes of this project (``LOOPBACK_ENV``: loopback stays loopback,
    usage stats and metrics export off). ``token``: token authentication with this secret
    (``RAY_AUTH_MODE=token``, ``RAY_AUTH_TOKEN``): every process of the cluster and the driver
    need the same one; passed in the environment, Ray writes no token file under ~/.ray.
    ``temp_dir``: Ray's temp folder."""
    env = dict(LOOPBACK_ENV)
    if token is not None:
        env.update(RAY_AUTH_MODE="token", RAY_AUTH_TOKEN=token)
    if temp_dir is not None:
        env["RAY_TMPDIR"] = str(temp_dir)
    return env


def new_auth_token() -> str:
    """A random secret for a private cluster's token authentication."""
    import secrets

    return secrets.token_hex(32)


def import_ray() -> Any:
    """``import ray`` (with ``LOOPBACK_ENV`` set first, unless already set otherwise), with a clear
    error when it is not installed."""
    for k, v in LOOPBACK_ENV.items():
        os.environ.setdefault(k, v)
    try:
        import ray
    except ImportError as exc:
        raise ConfigError(f"Ray is not installed ({exc})", field="--executor ray",
                          fix="pip install -r requirements/requirements.txt -c requirements/constraints.txt "
                              "(pins ray), or use --executor local") from exc
    return ray


def _is_loopback(host: str) -> bool:
    return host == "localhost" or host.startswith("127.") or host == "::1"


def check_loopback_resolution() -> None:
    """ConfigError when Ray would turn 127.0.0.1 into a routable address (Ray was imported before
    ``LOOPBACK_ENV`` was set)."""
    from ray._private import ray_constants

    if ray_constants.ENABLE_RAY_CLUSTER:
        raise ConfigError("Ray would resolve 127.0.0.1 to this host's network address (it was imported with "
                          "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER unset)", field="--node-ip-address",
                          fix="export RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0 before starting, or give this host's "
                              "cluster address with --node-ip-address")


class EpisodeWorker:
    """The Ray actor (wrapped with ``ray.remote`` by ``RayExecutor``): holds the batch's
    ``process`` object, whose ``Resources`` live in this actor's process (one model replica)."""

    def __init__(self, process: Process) -> None:
        self.process = process

    def pid(self) -> int:
        """The actor's process id (tests kill it)."""
        return os.getpid()

    def run(self, job: Job, out_dir: str, changed: list[str] | None) -> dict[str, Any]:
        """``batch.run_job`` in this actor; returns the marker."""
        return run_job(job, Path(out_dir), self.process, changed)


class _Failed:
    """A ``process`` that fails a job with ``reason`` (a job whose worker died too often)."""

    def __init__(self, reason: str) -> None:
        self.reason = reason

    def __call__(self, job: Job, job_dir: Path) -> dict[str, Any]:
        raise Kinema4DError(self.reason)


def init_private_cluster(num_cpus: float, temp_dir: str | None = None, **init_kwargs: Any) -> Callable[[], None]:
    """``ray.init`` of a private cluster on 127.0.0.1 for this process (no dashboard, token
    authentication with a secret of this run, session files in ``temp_dir`` or a new temp folder
    that is removed afterwards); returns the cleanup (shutdown, environment restored)."""
    saved = {k: os.environ.get(k) for k in ("RAY_AUTH_MODE", "RAY_AUTH_TOKEN")}
    os.environ.update(ray_env(token=new_auth_token()))
    ray = import_ray()
    _reload_ray_config()      # Ray reads RAY_AUTH_MODE into its cached config when imported
    check_loopback_resolution()
    own_tmp = temp_dir or tempfile.mkdtemp(prefix="k4dray-", dir="/tmp")   # short: unix socket paths
    init_kwargs = {"_node_ip_address": LOOPBACK, "log_to_driver": False, "configure_logging": False,
                   **init_kwargs}
    try:
        ray.init(include_dashboard=False, _temp_dir=own_tmp, num_cpus=num_cpus,
                 object_store_memory=OBJECT_STORE_BYTES, **init_kwargs)
    except BaseException:
        _restore(saved)
        raise

    def cleanup() -> None:
        ray.shutdown()
        _restore(saved)
        if temp_dir is None:
            shutil.rmtree(own_tmp, ignore_errors=True)

    return cleanup


def _restore(saved: dict[str, str | None]) -> None:
    for k, v in saved.items():
        if v is None:
            os.environ.pop(k, None)
        else:
            os.environ[k] = v
    _reload_ray_config()


def _reload_ray_config() -> None:
    """Make Ray's cached config read the environment again (as Ray itself does when it turns on
    token authentication)."""
    from ray._raylet import Config

    Config.initialize("")


@dataclass
class RayExecutor:
    """Run the planned jobs on Ray (see the module docstring).

    address: an existing cluster ("HOST:PORT" of ``ray start --head``, or "auto"); None starts a
    private cluster on 127.0.0.1 for this run (shut down after it). workers: actors (model
    replicas); gpus_per_worker / cpus_per_worker: each actor's Ray resources (a 14B replica
    needs whole GPUs, see docs/batch-evaluation.md). node_ip_address: this driver's address
    (127.0.0.1; on a multi-node cluster, this host's cluster address). temp_dir: Ray's session
    folder for a private cluster (default a new temp folder, removed afterwards).
    """

    address: str | None = None
    workers: int = 1
    gpus_per_worker: float = 0.0
    cpus_per_worker: float = 1.0
    max_attempts: int = 3
    node_ip_address: str = LOOPBACK
    temp_dir: str | None = None

    def __post_init__(self) -> None:
        if self.workers < 1:
            raise ConfigError(f"{self.workers} workers", field="--workers", fix="use --workers 1 or more")
        if self.gpus_per_worker < 0 or self.cpus_per_worker <= 0:
            raise ConfigError(f"gpus {self.gpus_per_worker}, cpus {self.cpus_per_worker} per worker",
                              field="--gpus-per-worker/--cpus-per-worker",
                              fix="use GPUs >= 0 and CPUs > 0 per worker")
        if self.max_attempts < 1:
            raise ConfigError(f"{self.max_attempts}", field="max_attempts", fix="use 1 or more")

    # ---- cluster ---------------------------------------------------------------------------------

    def _connect(self, ray: Any) -> Callable[[], None]:
        """ray.init for this run; returns the cleanup to call afterwards."""
        if ray.is_initialized():
            return lambda: None
        if _is_loopback(self.node_ip_address):
            check_loopback_resolution()
        kwargs: dict[str, Any] = {"_node_ip_address": self.node_ip_address, "log_to_driver": False,
                                  "configure_logging": False}
        if self.address:
            ray.init(address=self.address, **kwargs)
            return ray.shutdown
        need = self.workers * self.cpus_per_worker
        return init_private_cluster(num_cpus=max(need, os.cpu_count() or 1), temp_dir=self.temp_dir, **kwargs)

    # ---- running ---------------------------------------------------------------------------------

    def execute(self, plan: BatchPlan, out_dir: Path, process: Process, *, progress: bool = True,
                total: int | None = None) -> None:
        from tqdm import tqdm

        if not plan.todo:
            return
        ray = import_ray()
        from ray.exceptions import RayActorError

        out_dir = Path(out_dir).resolve()
        total = len(plan.todo) if total is None else total
        cleanup = self._connect(ray)
        worker_cls = ray.remote(EpisodeWorker).options(num_cpus=self.cpus_per_worker, num_gpus=self.gpus_per_worker,
                                                       max_restarts=0, max_task_retries=0)
        bar = tqdm(total=total, initial=total - len(plan.todo), desc="episodes (ray)", unit="ep",
                   disable=not progress, leave=False)
        pending: deque[Job] = deque(plan.todo)
        deaths: dict[str, int] = {}
        idle: list[Any] = [worker_cls.remote(process) for _ in range(min(self.workers, len(pending)))]
        self.actors = list(idle)        # the live actors (tests find their processes through them)
        inflight: dict[Any, tuple[Any, Job]] = {}
        log.info("ray: %d episodes on %d workers (%s GPU, %s CPU each)", len(pending), len(idle),
                 self.gpus_per_worker, self.cpus_per_worker)
        try:
            while pending or inflight:
                while idle and pending:
                    actor, job = idle.pop(), pending.popleft()
                    ref = actor.run.remote(job, str(out_dir), plan.changed.get(job.name))
                    inflight[ref] = (actor, job)
                ready, _ = ray.wait(list(inflight), num_returns=1)
                for ref in ready:
                    actor, job = inflight.pop(ref)
                    try:
                        ray.get(ref)
                        idle.append(actor)
                        bar.update(1)
                        bar.set_postfix_str(job.name)
                    except RayActorError as exc:
                        self._replace(ray, actor, worker_cls, process, idle)
                        if self._worker_died(job, out_dir, deaths, exc, process):
                            bar.update(1)
                        else:
                            pending.appendleft(job)
        finally:
            bar.close()
            for a in self.actors:
                try:
                    ray.kill(a, no_restart=True)
                except Exception:  # already gone
                    pass
            self.actors = []
            cleanup()

    def _replace(self, ray: Any, actor: Any, worker_cls: Any, process: Process, idle: list[Any]) -> None:
        """A new actor in place of a dead one."""
        try:
            ray.kill(actor, no_restart=True)
        except Exception:  # already gone
            pass
        self.actors = [a for a in self.actors if a is not actor]
        new = worker_cls.remote(process)
        self.actors.append(new)
        idle.append(new)

    def _worker_died(self, job: Job, out_dir: Path, deaths: dict[str, int], exc: Exception, process: Process) -> bool:
        """After the worker running ``job`` died: True when the job is settled (it completed before
        the death, or it has now failed too often), False when it must run again."""
        marker = read_marker(out_dir / job.name)
        if marker is not None and marker.get("fingerprint") == job_fingerprint(job):
            return True         # finished and published before the worker died: never recomputed
        for p in out_dir.glob(job_staging_pattern(job.name)):   # its half-written staging folder
            shutil.rmtree(p, ignore_errors=True)
        deaths[job.name] = deaths.get(job.name, 0) + 1
        first_line = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        if deaths[job.name] >= self.max_attempts:
            run_job(job, out_dir, _Failed(f"its Ray worker died {deaths[job.name]} times while running it "
                                          f"(last: {first_line}); out of memory? see the Ray logs"))
            return True
        log.warning("episode %s: its Ray worker died (%s); running it again on a new worker", job.name, first_line)
        return False


def make_executor(kind: str, *, address: str | None = None, workers: int = 1, gpus_per_worker: float = 0.0,
                  cpus_per_worker: float = 1.0, node_ip_address: str = LOOPBACK) -> LocalExecutor | RayExecutor:
    """The executor a CLI asked for ("local" | "ray")."""
    if kind == "local":
        return LocalExecutor()
    if kind == "ray":
        return RayExecutor(address=address, workers=workers, gpus_per_worker=gpus_per_worker,
                           cpus_per_worker=cpus_per_worker, node_ip_address=node_ip_address)
    raise ConfigError(f"unknown executor {kind!r}", field="--executor", fix="use local or ray")
