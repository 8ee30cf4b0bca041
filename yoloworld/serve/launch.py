"""Start Serve's HTTP proxy and the detector on Ray (started by `yoloworld.cluster.start_ray`); stop them."""

from __future__ import annotations

import logging
from dataclasses import dataclass

from yoloworld.cluster import ModelSpec
from yoloworld.serve.deployment import Detector, Limits

APP_NAME = "yoloworld"
QUIET = {"log_level": "WARNING", "enable_access_log": False}  # a line per request would drown the log
logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Scaling:
    """How many replicas, what each reserves on its node, and how much work each takes before Serve refuses more
    (503 at once: backpressure instead of an unbounded queue)."""

    replicas: int = 1
    cpus_per_replica: float = 1.0
    gpus_per_replica: float = 0.0
    max_ongoing_requests: int = 16  # per replica: the requests it holds (its batch queue included)
    max_queued_requests: int = 32  # per proxy, waiting for a free replica slot


def deploy(spec: ModelSpec, limits: Limits, scaling: Scaling, host: str, port: int):
    """Serve's proxy on host:port and the detector behind it; returns when every replica has loaded its model."""
    from ray import serve

    logging.getLogger("ray.serve").setLevel(logging.WARNING)  # its INFO lines would bury our one line of where
    if limits.max_batch_size > scaling.max_ongoing_requests:
        # Serve caps a replica at max_ongoing_requests: a larger batch could never fill
        scaling = Scaling(**{**scaling.__dict__, "max_ongoing_requests": limits.max_batch_size})
    serve.start(http_options={"host": host, "port": port}, logging_config=QUIET)
    detector = Detector.options(
        num_replicas=scaling.replicas, max_ongoing_requests=scaling.max_ongoing_requests,
        max_queued_requests=scaling.max_queued_requests, logging_config=QUIET,
        ray_actor_options={"num_cpus": scaling.cpus_per_replica, "num_gpus": scaling.gpus_per_replica})
    return serve.run(detector.bind(spec, limits), name=APP_NAME, route_prefix="/")


def stop() -> None:
    import ray
    from ray import serve

    try:
        serve.shutdown()
    finally:
        ray.shutdown()
