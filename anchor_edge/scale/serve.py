"""The online deployment: POST an encoded image, get `Prediction.to_dict()` JSON, with requests batched per replica.

Routes: `POST /predict` (the image file's bytes as the body), `GET /health`.
A body that is not an image is a 400 with the reason, a body over the limit
a 413 (refused before it is read when the request declares its length), and
the replica goes on serving. Each response carries the size of the batch it
was classified in (header `x-anchor-edge-batch-size`).

Batching: `serve.batch` gathers up to `max_batch_size` decoded images, waiting at
most `batch_wait_ms` after the first, into one `predict_batch` call run on a
worker thread, so the replica's event loop keeps accepting the next batch's
requests meanwhile. Images are decoded before they join a batch, so a bad one
fails alone. A replica takes at most `max_ongoing_requests` requests at a
time, which Ray defaults to 5, fewer than a batch of 8: it is set to two
batches (one running, one forming) and at least `MIN_ONGOING_REQUESTS`, so
that without batching too the replica queues requests itself; requests
left waiting in Ray's router are retried with a backoff, which cost a third
of the throughput here (docs/scale.md).

The deployment class is made by `application()` after Ray is connected,
since `serve.batch` needs Ray imported, and importing Ray before
`cluster.start()` would keep a local cluster off loopback.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from anchor_edge.checks import positive_int
from anchor_edge.errors import InputError
from anchor_edge.scale.cluster import import_ray

if TYPE_CHECKING:
    from anchor_edge.backends import BackendOptions

log = logging.getLogger("anchor_edge")

BATCH_SIZE_HEADER = "x-anchor-edge-batch-size"
MIN_ONGOING_REQUESTS = 16
APP_NAME = "anchor-edge"


@dataclass(frozen=True)
class ServeOptions:
    """How to serve a bundle. max_body_bytes: the largest request body accepted (default 20 MiB)."""

    host: str = "127.0.0.1"
    port: int = 8000
    replicas: int = 1
    threads_per_replica: int = 1
    #: Requests per predict_batch call (Ray Serve's max_batch_size; Pipeline's max_batch chunks model calls).
    max_batch_size: int = 8
    batch_wait_ms: float = 5.0
    max_body_bytes: int = 20 * 2**20
    gpus_per_replica: float = 0.0
    backend: str | BackendOptions = "auto"
    #: Pipeline.from_bundle's backend options in keyword form (providers, device, ...); threads come per replica.
    backend_keywords: Mapping[str, Any] = field(default_factory=dict)

    def check(self, cluster_cpus: float) -> None:
        """Raise InputError for values Serve would accept and then hang or misbehave on."""
        for name in ("port", "replicas", "threads_per_replica", "max_batch_size", "max_body_bytes"):
            positive_int(name.replace("_", "-"), getattr(self, name))
        if self.batch_wait_ms < 0:
            raise InputError(f"batch-wait-ms must be >= 0, got {self.batch_wait_ms}")
        needed = self.replicas * self.threads_per_replica
        if needed > cluster_cpus:
            raise InputError(
                f"{self.replicas} replicas x {self.threads_per_replica} threads need {needed} CPUs and the cluster has "
                f"{cluster_cpus:g}: Serve would wait for them forever; use fewer replicas or threads"
            )


def max_ongoing_requests(max_batch_size: int) -> int:
    """Requests one replica may hold: a running batch and a forming one, and never fewer than MIN_ONGOING_REQUESTS."""
    return max(2 * max_batch_size, MIN_ONGOING_REQUESTS)


def application(bundle: str, options: ServeOptions) -> Any:
    """The Serve application for `bundle` (pass it to `serve.run`); Ray must be connected (cluster.start)."""
    import_ray()
    from ray import serve
    from starlette.requests import Request
    from starlette.responses import JSONResponse

    from anchor_edge.method.preprocess import load_image
    from anchor_edge.scale.member import open_member_pipeline

    max_batch_size, wait_s, limit = options.max_batch_size, options.batch_wait_ms / 1000, options.max_body_bytes

    class PipelineServer:
        """One replica: a Pipeline, the routes, and the request batcher."""

        def __init__(self) -> None:
            self.pipeline = open_member_pipeline(
                bundle,
                threads=options.threads_per_replica,
                backend=options.backend,
                backend_keywords=options.backend_keywords,
            )

        async def __call__(self, request: Request) -> JSONResponse:
            route = (request.method, request.url.path.rstrip("/") or "/")
            if route == ("GET", "/health"):
                bundle_info = self.pipeline.bundle
                return JSONResponse(
                    {
                        "status": "ok",
                        "bundle": bundle,
                        "backend": self.pipeline.backend,
                        "classes": bundle_info.num_classes,
                        "max_batch": max_batch_size,
                    }
                )
            if route != ("POST", "/predict"):
                return JSONResponse({"error": "routes: POST /predict (an image file as the body), GET /health"}, 404)
            body = await _read_body(request, limit)
            if body is None:
                return JSONResponse({"error": f"the body is over the {limit}-byte limit"}, 413)
            try:
                image = load_image(body)
            except InputError as error:
                return JSONResponse({"error": str(error)}, 400)
            prediction, batch_size = await self.classify(image)
            return JSONResponse(prediction.to_dict(), headers={BATCH_SIZE_HEADER: str(batch_size)})

        @serve.batch(max_batch_size=max_batch_size, batch_wait_timeout_s=wait_s)
        async def classify(self, images: list) -> list:
            predictions = await asyncio.to_thread(self.pipeline.predict_batch, images)
            return [(prediction, len(images)) for prediction in predictions]

    deployment = serve.deployment(PipelineServer, name="PipelineServer").options(
        num_replicas=options.replicas,
        max_ongoing_requests=max_ongoing_requests(max_batch_size),
        ray_actor_options={"num_cpus": options.threads_per_replica, "num_gpus": options.gpus_per_replica},
    )
    return deployment.bind()


def start_server(bundle: str, options: ServeOptions) -> str:
    """Start Serve's HTTP proxy on options.host:port and deploy `bundle`; returns the base URL once it answers."""
    ray = import_ray()
    from ray import serve

    options.check(float(ray.cluster_resources().get("CPU", 0)))
    serve.start(http_options={"host": options.host, "port": options.port})
    serve.run(application(bundle, options), name=APP_NAME, route_prefix="/")
    url = f"http://{options.host}:{options.port}"
    log.info("serving %s at %s (%d replicas, batches up to %d)", bundle, url, options.replicas, options.max_batch_size)
    return url


def stop_server() -> None:
    """Shut Serve down (its proxy and replicas); the Ray cluster stays up."""
    from ray import serve

    serve.shutdown()


async def _read_body(request: Any, limit: int) -> bytes | None:
    """The body, or None as soon as it is known to be over `limit` bytes (from its declared length if any)."""
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        return None
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            return None
        chunks.append(chunk)
    return b"".join(chunks)
