"""One replica's routes, apart from Ray: who may call them, what each answers, and the deadline of a prediction.

    POST /predict   the image file's bytes -> Prediction.to_dict() JSON
    GET  /health    the process is up (open: no key needed)
    GET  /ready     the pipeline has classified an image (sends a tiny one through the batcher if none has been yet)
    GET  /metrics   Prometheus text format (serve_metrics)

Order of checks, each answered before the next is looked at: the key
(401; every route but /health, and unknown paths too, so that a caller
without the key learns nothing about the routes, and nothing of the
request body is read or decoded before it), the path (404), the method
(405 with `Allow`), then the route itself. A prediction must be answered
within `timeout_s` of reaching the replica, or the caller gets a 504 and
the request is cancelled: one still waiting for its batch leaves it
(serve.batch drops cancelled requests), one whose batch is running is
discarded when the batch ends.

`Replica` takes the batched `classify` and the metrics sink as arguments,
so serve.py wires it to Ray and the tests drive it with plain coroutines.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np

from anchor_edge.errors import InputError
from anchor_edge.scale.serve_access import AccessKey
from anchor_edge.scale.serve_metrics import Tally, content_type

log = logging.getLogger("anchor_edge")

BATCH_SIZE_HEADER = "x-anchor-edge-batch-size"
#: Method allowed on each known route.
ROUTES = {"/predict": "POST", "/health": "GET", "/ready": "GET", "/metrics": "GET"}
OPEN_ROUTES = frozenset({"/health"})
ROUTE_LIST = "routes: POST /predict (an image file as the body), GET /health, GET /ready, GET /metrics"
#: Seconds a client should wait before asking /ready again.
READY_RETRY_S = 1


class MetricsSink(Protocol):
    """Where a replica pushes its tally and reads the deployment's metrics text from."""

    async def push(self, taken: dict[str, Any]) -> None: ...

    async def render(self) -> bytes: ...


@dataclass(frozen=True)
class ReplicaSettings:
    """bundle: shown at /health; timeout_s: a prediction's deadline; max_body_bytes: the largest body read."""

    bundle: str
    max_batch_size: int
    max_body_bytes: int
    timeout_s: float
    access: AccessKey = AccessKey()


class Replica:
    """The routes of one replica around its pipeline; `handle` turns a Starlette request into a response."""

    def __init__(
        self,
        pipeline: Any,
        classify: Callable[[np.ndarray], Awaitable[tuple[Any, int]]],
        metrics: MetricsSink,
        settings: ReplicaSettings,
    ) -> None:
        self.pipeline, self.classify, self.metrics, self.settings = pipeline, classify, metrics, settings
        self.tally = Tally()
        self.ready = False
        self._probe_lock = asyncio.Lock()

    async def handle(self, request: Any) -> Any:
        """Answer `request`, and count it (route, status, time, error kind) in the tally."""
        from starlette.responses import JSONResponse

        began = time.perf_counter()
        path = request.url.path.rstrip("/") or "/"
        try:
            response, error = await self._route(request, path)
        except Exception:  # a bug or a backend failure: the caller gets a 500, the log the traceback
            log.exception("%s %s failed", request.method, path)
            response, error = (
                JSONResponse({"error": "internal error; the server's log has the details"}, 500),
                "internal",
            )
        route = path if path in ROUTES else "other"
        self.tally.request(route, response.status_code, time.perf_counter() - began, error)
        return response

    async def push_metrics(self) -> None:
        """Hand the tally to the metrics sink (periodically, and before /metrics answers)."""
        if self.tally:
            await self.metrics.push(self.tally.take())

    async def _route(self, request: Any, path: str) -> tuple[Any, str | None]:
        from starlette.responses import JSONResponse

        if path not in OPEN_ROUTES and not self.settings.access.admits(request.headers.get("authorization")):
            return JSONResponse(
                {"error": "this server needs its API key: send the header 'Authorization: Bearer KEY'"},
                401,
                headers={"WWW-Authenticate": "Bearer"},
            ), "unauthorized"
        allowed = ROUTES.get(path)
        if allowed is None:
            return JSONResponse({"error": ROUTE_LIST}, 404), "not_found"
        if request.method != allowed:
            return JSONResponse(
                {"error": f"{path} takes {allowed}, not {request.method}"}, 405, headers={"Allow": allowed}
            ), "method_not_allowed"
        if path == "/health":
            return self._health(), None
        if path == "/ready":
            return await self._ready()
        if path == "/metrics":
            await self.push_metrics()
            from starlette.responses import Response

            return Response(await self.metrics.render(), media_type=content_type()), None
        return await self._predict(request)

    def _health(self) -> Any:
        from starlette.responses import JSONResponse

        return JSONResponse(
            {
                "status": "ok",
                "bundle": self.settings.bundle,
                "backend": self.pipeline.backend,
                "classes": self.pipeline.bundle.num_classes,
                "max_batch": self.settings.max_batch_size,
            }
        )

    async def _ready(self) -> tuple[Any, str | None]:
        """200 once the pipeline has classified an image; else send a tiny one through it (one probe at a time) first.

        The probe goes through `classify`, the batcher, so the pipeline still
        runs one batch at a time; it counts as a batch, not as an image classified.
        """
        from starlette.responses import JSONResponse

        async with self._probe_lock:
            if not self.ready:
                try:
                    await self.classify(probe_image())
                except Exception as error:  # whatever stops the pipeline answering makes the replica not ready
                    log.warning("readiness probe failed: %s", error)
                    return JSONResponse(
                        {"status": "not ready", "error": str(error)}, 503, headers={"Retry-After": str(READY_RETRY_S)}
                    ), "not_ready"
                self.ready = True
        return JSONResponse({"status": "ready"}), None

    async def _predict(self, request: Any) -> tuple[Any, str | None]:
        from starlette.responses import JSONResponse

        timeout = self.settings.timeout_s
        try:
            return await asyncio.wait_for(self._classify_request(request), timeout)
        except asyncio.TimeoutError:  # the builtin TimeoutError from Python 3.11 on
            return JSONResponse(
                {"error": f"no answer within the {timeout:g} s deadline; the request was dropped: retry with backoff"},
                504,
            ), "deadline"

    async def _classify_request(self, request: Any) -> tuple[Any, str | None]:
        from starlette.responses import JSONResponse

        from anchor_edge.method.preprocess import load_image

        limit = self.settings.max_body_bytes
        body = await read_body(request, limit)
        if body is None:
            return JSONResponse({"error": f"the body is over the {limit}-byte limit"}, 413), "body_too_large"
        try:  # decoding a large image takes long: off the event loop, so other requests and deadlines go on
            image = await asyncio.to_thread(load_image, body)
        except InputError as error:
            return JSONResponse({"error": str(error)}, 400), "bad_image"
        prediction, batch_size = await self.classify(image)
        self.ready = True
        self.tally.classified(1, len(prediction.classified_sizes))
        return JSONResponse(prediction.to_dict(), headers={BATCH_SIZE_HEADER: str(batch_size)}), None


def probe_image() -> np.ndarray:
    """The tiny image /ready runs through the pipeline: 64 x 64 mid-grey BGR."""
    return np.full((64, 64, 3), 128, np.uint8)


async def read_body(request: Any, limit: int) -> bytes | None:
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
