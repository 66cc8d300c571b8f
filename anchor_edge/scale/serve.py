"""The online deployment: POST an encoded image, get `Prediction.to_dict()` JSON, with requests batched per replica.

The routes, the API key check, the deadline and readiness are in
serve_routes (apart from Ray); the key and the refusal to listen beyond
loopback without one in serve_access; the metrics in serve_metrics. This
module wires them to Ray Serve: one `PipelineServer` deployment (the
replicas) and one `MetricsStore` deployment (a single replica, no CPU)
that every replica pushes its counts to.

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

Backpressure: beyond what the replicas hold, at most `max_queued` requests
per replica wait in Ray's router (Ray's `max_queued_requests`, counted per
proxy, so it is set to max_queued x replicas); past that Ray's proxy
answers 503 with `Retry-After` at once, before any replica sees the
request (so /metrics does not count those).

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
from anchor_edge.scale.serve_access import DEFAULT_KEY_VARIABLE, AccessKey, exposure_problem
from anchor_edge.scale.serve_routes import BATCH_SIZE_HEADER, Replica, ReplicaSettings, read_body

if TYPE_CHECKING:
    from anchor_edge.backends import BackendOptions

__all__ = ["BATCH_SIZE_HEADER", "ServeOptions", "application", "start_server", "stop_server", "read_body"]

log = logging.getLogger("anchor_edge")

MIN_ONGOING_REQUESTS = 16
#: Requests per replica that may wait in Ray's router beyond those the replica holds (--max-queued's default).
DEFAULT_MAX_QUEUED = 16
#: The Retry-After of a 503 for a full queue, in seconds.
RETRY_AFTER_S = 1
#: Seconds between a replica's pushes of its counts to the metrics store.
PUSH_INTERVAL_S = 1.0
APP_NAME = "anchor-edge"


@dataclass(frozen=True)
class ServeOptions:
    """How to serve a bundle.

    max_body_bytes: the largest request body accepted (default 20 MiB).
    max_queued: requests per replica that may wait beyond those it holds; more get 503 + Retry-After.
    timeout_s: a prediction's deadline in the replica; past it the client gets 504 and the work is dropped.
    access: the API key's digest (serve_access.AccessKey.from_key(read_key())); none: no key needed.
    insecure: serve beyond loopback without a key, on purpose.
    """

    host: str = "127.0.0.1"
    port: int = 8000
    replicas: int = 1
    threads_per_replica: int = 1
    #: Requests per predict_batch call (Ray Serve's max_batch_size; Pipeline's max_batch chunks model calls).
    max_batch_size: int = 8
    batch_wait_ms: float = 5.0
    max_body_bytes: int = 20 * 2**20
    max_queued: int = DEFAULT_MAX_QUEUED
    timeout_s: float = 30.0
    gpus_per_replica: float = 0.0
    backend: str | BackendOptions = "auto"
    #: Pipeline.from_bundle's backend options in keyword form (providers, device, ...); threads come per replica.
    backend_keywords: Mapping[str, Any] = field(default_factory=dict)
    access: AccessKey = field(default_factory=AccessKey, repr=False)
    insecure: bool = False
    #: The environment variable the key came from, for messages.
    key_variable: str = DEFAULT_KEY_VARIABLE

    def check_exposure(self) -> None:
        """Raise InputError for a host beyond loopback without a key (unless insecure), or a needless insecure."""
        problem = exposure_problem(
            self.host, has_key=self.access.required, insecure=self.insecure, variable=self.key_variable
        )
        if problem:
            raise InputError(problem)

    def check(self, cluster_cpus: float) -> None:
        """Raise InputError for values Serve would accept and then hang or misbehave on, or expose unprotected."""
        self.check_exposure()
        for name in ("port", "replicas", "threads_per_replica", "max_batch_size", "max_body_bytes", "max_queued"):
            positive_int(name.replace("_", "-"), getattr(self, name))
        if self.batch_wait_ms < 0:
            raise InputError(f"batch-wait-ms must be >= 0, got {self.batch_wait_ms}")
        if not 0 < self.timeout_s < float("inf"):
            raise InputError(f"timeout-s must be a number > 0, got {self.timeout_s}")
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

    from anchor_edge.scale.member import open_member_pipeline
    from anchor_edge.scale.serve_metrics import MetricsStore

    max_batch_size, wait_s = options.max_batch_size, options.batch_wait_ms / 1000
    settings = ReplicaSettings(
        bundle=bundle,
        max_batch_size=max_batch_size,
        max_body_bytes=options.max_body_bytes,
        timeout_s=options.timeout_s,
        access=options.access,
    )

    class PipelineServer:
        """One replica: a Pipeline, its routes (serve_routes.Replica), the request batcher and the metrics pusher."""

        def __init__(self, store: Any) -> None:
            pipeline = open_member_pipeline(
                bundle,
                threads=options.threads_per_replica,
                backend=options.backend,
                backend_keywords=options.backend_keywords,
            )
            self.replica = Replica(pipeline, self.classify, _StoreSink(store), settings)
            self._pusher: asyncio.Task | None = None

        async def __call__(self, request: Any) -> Any:
            if self._pusher is None:
                self._pusher = asyncio.get_running_loop().create_task(self._push_forever())
            return await self.replica.handle(request)

        async def _push_forever(self) -> None:
            while True:
                await asyncio.sleep(PUSH_INTERVAL_S)
                try:
                    await self.replica.push_metrics()
                except Exception as error:  # a lost push loses counts, never a request
                    log.warning("could not push metrics: %s", error)

        @serve.batch(max_batch_size=max_batch_size, batch_wait_timeout_s=wait_s)
        async def classify(self, images: list) -> list:
            self.replica.tally.batch(len(images))
            predictions = await asyncio.to_thread(self.replica.pipeline.predict_batch, images)
            return [(prediction, len(images)) for prediction in predictions]

    store = serve.deployment(MetricsStore, name="MetricsStore").options(
        num_replicas=1, ray_actor_options={"num_cpus": 0}
    )
    deployment = serve.deployment(PipelineServer, name="PipelineServer").options(
        num_replicas=options.replicas,
        max_ongoing_requests=max_ongoing_requests(max_batch_size),
        max_queued_requests=options.max_queued * options.replicas,
        backpressure_config={"status_code": 503, "retry_after_s": RETRY_AFTER_S},
        ray_actor_options={"num_cpus": options.threads_per_replica, "num_gpus": options.gpus_per_replica},
    )
    return deployment.bind(store.bind())


class _StoreSink:
    """serve_routes.MetricsSink over the MetricsStore deployment's handle."""

    def __init__(self, handle: Any) -> None:
        self.handle = handle

    async def push(self, taken: dict[str, Any]) -> None:
        await self.handle.add.remote(taken)

    async def render(self) -> bytes:
        return await self.handle.render.remote()


def start_server(bundle: str, options: ServeOptions) -> str:
    """Start Serve's HTTP proxy on options.host:port and deploy `bundle`; returns the base URL once it answers.

    Raises:
        InputError: an option Serve would hang or misbehave on, or a host beyond
            loopback without an API key (checked before anything listens).
    """
    options.check_exposure()
    ray = import_ray()
    from ray import serve

    options.check(float(ray.cluster_resources().get("CPU", 0)))
    serve.start(http_options={"host": options.host, "port": options.port})
    serve.run(application(bundle, options), name=APP_NAME, route_prefix="/")
    url = f"http://{options.host}:{options.port}"
    log.info(
        "serving %s at %s (%d replicas, batches up to %d, %s)",
        bundle,
        url,
        options.replicas,
        options.max_batch_size,
        "API key required" if options.access.required else "no API key",
    )
    return url


def stop_server() -> None:
    """Shut Serve down (its proxy and replicas); the Ray cluster stays up."""
    from ray import serve

    serve.shutdown()
