"""`yoloworld serve`: the detector as an HTTP API on Ray Serve (see yoloworld/serve/). Flags are checked and the
model is loaded once here before Ray starts, so a mistake is one line, not a cluster that fails later."""

from __future__ import annotations

import logging
import os
import signal
import socket
import time

from yoloworld.cli.app import is_loopback, port_number
from yoloworld.cli.common import add_model_flags, number_between, positive_int

logger = logging.getLogger(__name__)
API_KEY_ENV = "YOLOWORLD_API_KEY"


milliseconds = number_between(0, 10_000, "ms")
resources = number_between(0, 1024)  # CPUs or GPUs a replica reserves


def add_parser(sub) -> None:
    p = sub.add_parser("serve", help="HTTP detection API on Ray Serve: replicas, dynamic batching, clusters "
                       "(needs yoloworld[serve])",
                       description="POST /v1/detect (multipart: image, optional classes, conf, iou, max_det) answers "
                       "predict --json's record; GET /health, /docs. Starts a local Ray instance unless --address "
                       "names a cluster.")
    add_model_flags(p)
    p.add_argument("--host", default="127.0.0.1", help="address to serve on (default 127.0.0.1: this machine only; "
                   "0.0.0.0 opens it to your network: add --api-key)")
    p.add_argument("--port", type=port_number, default=8000, help="port (default 8000; 0: any free port)")
    p.add_argument("--api-key", help=f"require this key in the X-API-Key header (default: ${API_KEY_ENV}, which keeps "
                   "it out of the process list)")
    p.add_argument("--address", help="a Ray cluster to join (ray://HOST:10001 or auto); default: a local Ray instance")
    p.add_argument("--replicas", type=positive_int, default=1, help="model replicas (default 1)")
    p.add_argument("--cpus-per-replica", type=resources, default=1.0, help="CPUs each replica reserves (default 1)")
    p.add_argument("--gpus-per-replica", type=resources, default=0.0,
                   help="GPUs each replica reserves (default 0; 0.5 puts two replicas on one GPU)")
    p.add_argument("--max-batch-size", type=positive_int, default=8, help="images per forward pass (default 8)")
    p.add_argument("--batch-wait-ms", type=milliseconds, default=10.0,
                   help="how long a batch waits to fill before it runs (default 10)")
    p.add_argument("--max-ongoing-requests", type=positive_int, default=16,
                   help="requests a replica holds at once (default 16)")
    p.add_argument("--max-queued-requests", type=positive_int, default=32,
                   help="requests waiting for a replica; beyond them the server answers 503 at once (default 32)")
    p.add_argument("--max-upload-mb", type=positive_int, default=20, help="largest upload in MB (default 20)")
    p.add_argument("--num-cpus", type=positive_int, help="CPUs of the local Ray instance (default: all)")
    p.add_argument("--metrics-port", type=port_number, help="where Ray exports Prometheus metrics (requests, "
                   "latency, batch sizes, queue lengths); default: off")


def run(args) -> int:
    from yoloworld.errors import InputError

    try:
        import ray  # noqa: F401
        from ray import serve  # noqa: F401
    except ModuleNotFoundError:
        raise InputError("yoloworld serve needs Ray Serve: pip install 'yoloworld[serve]'") from None
    from yoloworld.cluster import ModelSpec, start_ray
    from yoloworld.serve.deployment import Limits
    from yoloworld.serve.launch import Scaling, deploy, stop

    spec, api_key = ModelSpec.from_args(args), os.environ.get(API_KEY_ENV) if args.api_key is None else args.api_key
    port = free_port(args.host, args.port)
    spec.load(device="cpu")  # here once, so bad weights or classes fail as one line before Ray starts
    warning = exposure_warning(args.host, api_key)
    if warning:
        logger.warning(warning)
    limits = Limits(args.max_upload_mb * 2**20, args.max_batch_size, args.batch_wait_ms / 1000, api_key or None)
    scaling = Scaling(args.replicas, args.cpus_per_replica, args.gpus_per_replica, args.max_ongoing_requests,
                      args.max_queued_requests)
    signal.signal(signal.SIGTERM, interrupt)  # a service manager's stop shuts Ray down cleanly too
    try:
        start_ray(args.address, args.num_cpus, args.metrics_port)
        deploy(spec, limits, scaling, args.host, port)
        print(f"yoloworld serve: http://{args.host}:{port} ({args.replicas} replica(s); POST /v1/detect, GET /health, "
              "/docs; Ctrl-C to stop)", flush=True)
        while True:
            time.sleep(0.5)
    except KeyboardInterrupt:
        print("yoloworld serve: stopped", flush=True)
    finally:
        stop()
    return 0


def exposure_warning(host: str, api_key: str | None) -> str | None:
    """The warning for a server that other machines can reach and that asks for no key (None otherwise)."""
    if is_loopback(host) or api_key:
        return None
    return (f"warning: serving on {host} without an API key: anyone who can reach this machine can use the model; "
            f"add --api-key KEY (or set {API_KEY_ENV})")


def interrupt(*_) -> None:
    raise KeyboardInterrupt


def free_port(host: str, port: int) -> int:
    """`port`, or any free port for 0; one line when it is taken or `host` is not this machine's."""
    from yoloworld.errors import InputError

    try:
        with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as probe:
            probe.bind((host, port))
            return probe.getsockname()[1]
    except OSError as exc:
        raise InputError(f"--host {host} --port {port}: cannot serve there ({exc.strerror}); choose another --port "
                         "(0: any free port)") from None
