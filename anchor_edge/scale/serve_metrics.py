"""What `anchor-edge serve` reports at `GET /metrics`: counts, latencies, batch sizes, errors (Prometheus text).

Each replica adds to a `Tally` on the request path (dictionary and list
appends, no locks: a replica's routes run on one event loop) and pushes
it about once a second, and before answering /metrics, to one
`MetricsStore` for the whole deployment (a one-replica Serve deployment of
its own), so a scrape sees every replica whichever one answers it. The
store keeps the metrics in a prometheus_client registry (installed with
ray[serve]) and writes its text format.

Label values are bounded: the route is one of the known routes or
"other", so requests to made-up paths cannot grow the label set.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

#: Seconds: a request's time inside the replica, from its headers to its answer.
LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)
#: Images per predict_batch call.
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128)
PREFIX = "anchor_edge_"


class Tally:
    """One replica's observations since it last pushed them: cheap to add to on the request path."""

    def __init__(self) -> None:
        self.requests: Counter[tuple[str, int]] = Counter()
        self.latencies: list[tuple[str, float]] = []
        self.batches: list[int] = []
        self.errors: Counter[str] = Counter()
        self.images = 0
        self.patches = 0

    def request(self, route: str, status: int, seconds: float, error: str | None = None) -> None:
        self.requests[route, status] += 1
        self.latencies.append((route, seconds))
        if error is not None:
            self.errors[error] += 1

    def batch(self, size: int) -> None:
        self.batches.append(size)

    def classified(self, images: int, patches: int) -> None:
        self.images += images
        self.patches += patches

    def __bool__(self) -> bool:
        return bool(self.requests or self.batches)

    def take(self) -> dict[str, Any]:
        """Everything tallied, as plain data (it crosses to the store's process), and start again from zero."""
        taken = {
            "requests": [(route, status, count) for (route, status), count in self.requests.items()],
            "latencies": self.latencies,
            "batches": self.batches,
            "errors": dict(self.errors),
            "images": self.images,
            "patches": self.patches,
        }
        self.__init__()  # type: ignore[misc]
        return taken


class MetricsStore:
    """The deployment's metrics, summed over every replica's pushed tallies."""

    def __init__(self) -> None:
        from prometheus_client import CollectorRegistry, Counter, Histogram

        self.registry = CollectorRegistry()
        self.requests = Counter(
            PREFIX + "requests",
            "Requests answered, by route and HTTP status",
            ["route", "status"],
            registry=self.registry,
        )
        self.latency = Histogram(
            PREFIX + "request_seconds",
            "Time in the replica per request",
            ["route"],
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.batch_size = Histogram(
            PREFIX + "batch_size", "Images per predict_batch call", buckets=BATCH_BUCKETS, registry=self.registry
        )
        self.images = Counter(PREFIX + "images_classified", "Images classified", registry=self.registry)
        self.patches = Counter(PREFIX + "patches_classified", "Patches classified", registry=self.registry)
        self.errors = Counter(
            PREFIX + "errors", "Requests answered with an error, by kind", ["kind"], registry=self.registry
        )

    def add(self, taken: dict[str, Any]) -> None:
        """Add one replica's `Tally.take()`."""
        for route, status, count in taken["requests"]:
            self.requests.labels(route=route, status=str(status)).inc(count)
        for route, seconds in taken["latencies"]:
            self.latency.labels(route=route).observe(seconds)
        for size in taken["batches"]:
            self.batch_size.observe(size)
        for kind, count in taken["errors"].items():
            self.errors.labels(kind=kind).inc(count)
        self.images.inc(taken["images"])
        self.patches.inc(taken["patches"])

    def render(self) -> bytes:
        from prometheus_client import generate_latest

        return generate_latest(self.registry)


def content_type() -> str:
    from prometheus_client import CONTENT_TYPE_LATEST

    return CONTENT_TYPE_LATEST
