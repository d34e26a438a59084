"""Beyond one machine, on Ray (``pip install 'mipd-edge[cluster]'``).

- ``ray_application``: the HTTP app of ``app.py`` as a Ray Serve deployment behind Ray's HTTP
  proxy, with the same routes: replicas (autoscaled between ``min_replicas`` and
  ``max_replicas``), each holding its own Predictor and batching queue. ``serve_on_ray`` runs it
  until SIGTERM (``mipd-edge serve BUNDLE --ray``).
- ``predict_on_ray``: a folder of images through Ray Data (``mipd-edge predict --source DIR
  --ray``): workers each holding a Predictor answer the files one by one, exactly as the
  single-process run does, and the lines come back in the folder's order, so the JSONL is the
  same file.

What differs from one process, on purpose: vocabulary edits are off (each replica holds its own
vocabulary; an edit would reach one of them), and ``/metrics`` counts the replica that took the
request (Ray exports its own metrics for the whole deployment). Replicas and workers read the
bundle and the images by path: on a cluster, those paths must be readable on every node.
"""

from __future__ import annotations

import logging
import os
import signal
import threading
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator, Optional, Sequence

import numpy as np

from ..config import ClusterConfig, ServeConfig
from ..errors import MipdEdgeError, require

log = logging.getLogger(__name__)

APP_NAME = "mipd-edge"


@dataclass(frozen=True)
class PredictorSpec:
    """What a replica or worker builds its Predictor from: a bundle path and the runtime's
    choices (sent to the workers instead of a loaded model, which cannot travel)."""

    bundle: str
    backend: str = "auto"
    device: str = "CPU"
    precision: str = "auto"
    threads: Optional[int] = None

    def load(self):
        """The Predictor, loaded where this runs (a replica or worker: its bundle read from its path there)."""
        from ..deploy.predictor import Predictor

        return Predictor(self.bundle, backend=self.backend, device=self.device, precision=self.precision,
                         threads=self.threads)


@contextmanager
def ray_session(address: Optional[str]) -> Iterator[Any]:
    """Ray, connected: to ``address`` (``auto``, ``ray://HEAD:10001``), else a local instance
    started here and stopped on leaving. A Ray already initialised in this process is used as it is."""
    ray = require("ray", "cluster", "Running on Ray")
    started = not ray.is_initialized()
    if started:
        # Ray's coming default (it warns until it is chosen): a worker that asks for no GPU
        # keeps the machine's CUDA_VISIBLE_DEVICES as it is
        os.environ.setdefault("RAY_ACCEL_ENV_VAR_OVERRIDE_ON_ZERO", "0")
        try:
            ray.init(address=address, include_dashboard=False, log_to_driver=False, logging_level=logging.WARNING,
                     configure_logging=False)
        except (ConnectionError, RuntimeError, ValueError) as exc:  # no cluster there, or not a Ray address
            raise MipdEdgeError(f"cannot reach Ray at {address or 'a new local instance'}: {exc}") from exc
    try:
        yield ray
    finally:
        if started:
            ray.shutdown()


def quiet_ray() -> None:
    """Ray's start-up notes and Ray Data's execution plans off the console (for the CLI, which
    prints each answer; Ray Data sets its loggers' levels when it is imported, so after that)."""
    require("ray", "cluster", "Running on Ray")
    import ray.data  # noqa: F401

    for name in ("ray", "ray.data", "ray.serve"):
        logging.getLogger(name).setLevel(logging.ERROR)


def ray_application(spec: PredictorSpec, cfg: ServeConfig = ServeConfig(),
                    cluster: ClusterConfig = ClusterConfig()) -> Any:
    """The serving app as a Ray Serve application (``serve.run`` it, or name it as the
    ``import_path`` of a Serve config file or a KubeRay RayService). The autoscaler adds a
    replica when the ones running hold more than a full batch (``cfg.max_batch``) each."""
    from ray import serve

    from .app import create_app

    def http_app():  # runs on each replica: its own Predictor and batching queue
        return create_app(spec.load(), cfg)

    if cluster.min_replicas == cluster.max_replicas:
        scaling: dict[str, Any] = {"num_replicas": cluster.min_replicas}
    else:
        scaling = {"autoscaling_config": {"min_replicas": cluster.min_replicas, "max_replicas": cluster.max_replicas,
                                          "target_ongoing_requests": cfg.max_batch}}
    deployment = serve.deployment(serve.ingress(http_app)(), name=APP_NAME, max_ongoing_requests=cfg.max_queue,
                                  ray_actor_options={"num_cpus": cluster.cpus_per_worker}, **scaling)
    return deployment.bind()


def serve_on_ray(spec: PredictorSpec, cfg: ServeConfig = ServeConfig(), cluster: ClusterConfig = ClusterConfig(),
                 stop: Optional[threading.Event] = None) -> None:
    """Serve on Ray Serve at ``cfg.host:cfg.port`` until SIGTERM / SIGINT (or ``stop`` is set),
    then take the application down; replicas finish the requests they hold first."""
    stop = stop or threading.Event()
    with ray_session(cluster.ray_address):
        from ray import serve

        if threading.current_thread() is threading.main_thread():
            # after ray.init, which puts its own crash handler (a stack dump) on SIGTERM
            for sig in (signal.SIGTERM, signal.SIGINT):
                signal.signal(sig, lambda *_: stop.set())
        serve.start(http_options={"host": cfg.host, "port": cfg.port}, logging_config={"log_level": "WARNING"})
        quiet_ray()  # serve.run says again that Serve is running, and that it keeps its own port
        serve.run(ray_application(spec, cfg, cluster), name=APP_NAME, route_prefix="/")
        replicas = serve.status().applications[APP_NAME].deployments[APP_NAME].replica_states
        log.info("serving %s on Ray Serve at http://%s:%d: replicas running %s (%d to %d)", spec.bundle, cfg.host,
                 cfg.port, replicas.get("RUNNING", 0), cluster.min_replicas, cluster.max_replicas)
        try:
            while not stop.wait(0.5):
                pass
        finally:
            serve.delete(APP_NAME)  # replicas finish what they hold; other applications on the cluster stay


class FolderWorker:
    """A Ray Data worker: one Predictor, the batch's files answered one by one."""

    def __init__(self, spec: PredictorSpec):
        self.predictor = spec.load()

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        from ..deploy.folder import answer_file

        answers = [answer_file(self.predictor, path) for path in batch["path"]]
        columns = {name: np.array([getattr(a, name) for a in answers], object)
                   for name in ("source", "line", "text", "error")}
        return {"index": batch["index"], "ms": np.array([a.ms for a in answers]), **columns}


def predict_on_ray(spec: PredictorSpec, paths: Sequence[Path], cluster: ClusterConfig = ClusterConfig(),
                   batch_size: int = 16) -> Iterator[Any]:
    """``FileAnswer``s of ``paths`` from ``cluster.ray_workers`` Ray Data workers, in the order of
    ``paths``, as they arrive (the driver never holds the whole folder's answers)."""
    from ..deploy.folder import FileAnswer

    with ray_session(cluster.ray_address) as ray:
        context = ray.data.DataContext.get_current()
        context.execution_options.preserve_order = True
        context.enable_progress_bars = False  # the caller prints each answer as it comes
        items = [{"index": i, "path": str(p)} for i, p in enumerate(paths)]
        answers = ray.data.from_items(items).map_batches(
            FolderWorker, fn_constructor_kwargs={"spec": spec}, batch_size=batch_size, num_cpus=cluster.cpus_per_worker,
            compute=ray.data.ActorPoolStrategy(size=cluster.ray_workers))
        for row in answers.iter_rows():
            yield FileAnswer(row["source"], row["line"], row["text"], float(row["ms"]), row["error"])


__all__ = ["PredictorSpec", "predict_on_ray", "quiet_ray", "ray_application", "ray_session", "serve_on_ray"]
