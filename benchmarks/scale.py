"""Scaling figures on a local Ray cluster (loopback only): offline images/s against actors, \
online latency against concurrency.

    python -m benchmarks.scale --bundle bundles/default --json docs/benchmarks/scale.json \
--chart docs/benchmarks/scale.png

Images: the digits benchmark's test images (real digits on real photos),
written as PNG files, so the job reads and decodes files as a user's would.

Offline (`run_batch`, 1 thread per actor, batch 16): the job's start-up (until
its first results: actor creation, bundle loading, the first batch) apart
from its steady rate (the rest of the images over the rest of the time);
scaling efficiency is the steady rate over actors x the one-actor rate. The
in-process reference is `predict_batch` over the same files in one process
with the same threads.

Online (`start_server`, 2 replicas x 1 thread): a bounded number of requests
at each concurrency, sent from threads of this process over persistent
HTTP connections to 127.0.0.1, with request batching on (max batch 8,
5 ms wait) and off (max batch 1), each setting twice (A B B A, averaged).
Reported: requests/s, latency p50/p99, and the mean batch the replicas formed. The in-process reference is one
image at a time in one process. The client shares the machine's cores with
the server, as a sidecar would.

Access and metrics (no Ray, no HTTP): what the API key check and the
metrics add to each request, in microseconds: the key check
(`AccessKey.admits` on a Bearer header), the replica's tally of the request
(route, status, latency, one image, its patches, a batch of one: the worst
case), both together (the request path), and the metrics store's share
of adding that tally (in its own process, off the request path).
Interleaved rounds of `OVERHEAD_CALLS` calls each; the median round.

Exit codes: 0 done, 1 a bundle or Ray failed, 2 usage error.
"""

from __future__ import annotations

import argparse
import http.client
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import cv2

from anchor_edge.errors import AnchorEdgeError
from benchmarks import report
from benchmarks.measure import summarize

BATCH_SIZE = 16
ACTORS = (1, 2)
#: The steady rate leaves the first batch out: fewer images would leave the most actors no batch to time.
MIN_IMAGES = BATCH_SIZE * (max(ACTORS) + 1)
CONCURRENCY = (1, 8, 32)
REQUESTS_PER_LEVEL = 128
WARMUP_REQUESTS = 16
SERVING = {"batching on (max batch 8, 5 ms)": (8, 5.0), "batching off (max batch 1)": (1, 0.0)}
REPLICAS = 2
OVERHEAD_CALLS = 10_000
OVERHEAD_ROUNDS = 7
#: A 256-bit key in URL-safe base64 (`python -c "import secrets; print(secrets.token_urlsafe(32))"`) has 43 characters.
KEY_LENGTH = 43


def write_images(folder: Path, count: int) -> list[Path]:
    from export.data.digits import make_sample

    paths = []
    for index in range(count):
        path = folder / f"{index:05d}.png"
        cv2.imwrite(str(path), make_sample("test", index).image)
        paths.append(path)
    return paths


def in_process(bundle: Path, paths: list[Path]) -> dict[str, float]:
    """One process, one thread: batch throughput (batch 16) and one-image-at-a-time latency."""
    from anchor_edge import Pipeline
    from anchor_edge.method.preprocess import load_image

    with Pipeline.from_bundle(bundle, backend="onnxruntime", threads=1) as pipe:
        pipe.predict_batch([load_image(p) for p in paths[:BATCH_SIZE]])  # warm-up
        start = time.perf_counter()
        for i in range(0, len(paths), BATCH_SIZE):
            pipe.predict_batch([load_image(p) for p in paths[i : i + BATCH_SIZE]])
        batch_rate = len(paths) / (time.perf_counter() - start)
        latencies = []
        for path in paths[:REQUESTS_PER_LEVEL]:
            began = time.perf_counter()
            pipe(load_image(path))
            latencies.append((time.perf_counter() - began) * 1000)
    single = summarize(latencies)
    return {
        "images_per_s_batch16": batch_rate,
        "latency_ms_p50": single["p50"],
        "latency_ms_p99": single["p99"],
        "requests_per_s_sequential": 1000 / single["mean"],
    }


def access_and_metrics_overhead(calls: int = OVERHEAD_CALLS, rounds: int = OVERHEAD_ROUNDS) -> dict[str, float]:
    """Microseconds per request: the key check, the replica's tally, both (the request path), the store's share."""
    from anchor_edge.scale.serve_access import AccessKey
    from anchor_edge.scale.serve_metrics import MetricsStore, Tally

    key = "k" * KEY_LENGTH
    access, header, store = AccessKey.from_key(key), f"Bearer {key}", MetricsStore()

    def check() -> None:
        for _ in range(calls):
            if not access.admits(header):
                raise RuntimeError("the key check refused the key")

    def count() -> None:
        tally = Tally()
        for _ in range(calls):
            tally.request("/predict", 200, 0.05)
            tally.classified(1, 4)
            tally.batch(1)

    def both() -> None:
        tally = Tally()
        for _ in range(calls):
            access.admits(header)
            tally.request("/predict", 200, 0.05)
            tally.classified(1, 4)
            tally.batch(1)

    timings: dict[str, list[float]] = {"auth_us": [], "tally_us": [], "request_path_us": [], "store_us": []}
    for round_index in range(rounds):
        steps = [("auth_us", check), ("tally_us", count), ("request_path_us", both)]
        for name, step in steps if round_index % 2 == 0 else reversed(steps):
            began = time.perf_counter()
            step()
            timings[name].append((time.perf_counter() - began) * 1e6 / calls)
        tally = Tally()
        for _ in range(calls):
            tally.request("/predict", 200, 0.05)
            tally.classified(1, 4)
            tally.batch(1)
        taken = tally.take()
        began = time.perf_counter()
        store.add(taken)
        timings["store_us"].append((time.perf_counter() - began) * 1e6 / calls)
    figures = {name: summarize(values)["p50"] for name, values in timings.items()}
    return {**figures, "calls_per_round": calls, "rounds": rounds}


def offline(bundle: Path, paths: list[Path], work: Path) -> dict[str, dict[str, float]]:
    from anchor_edge.scale.batch import run_batch

    figures: dict[str, dict[str, float]] = {}
    for actors in ACTORS:
        job = run_batch(
            bundle,
            [str(p) for p in paths],
            work / f"results-{actors}",
            actors=actors,
            threads_per_actor=1,
            batch_size=BATCH_SIZE,
            backend="onnxruntime",
            progress=False,
        )
        first_batch = min(BATCH_SIZE, job.written)
        steady = (job.written - first_batch) / (job.seconds - job.startup_seconds)
        figures[str(actors)] = {
            "job_seconds": job.seconds,
            "images_per_s_job": job.images_per_second,
            "images_per_s_steady": steady,
            "startup_seconds": job.startup_seconds,
            "errors": job.errors,
        }
    one = figures[str(ACTORS[0])]["images_per_s_steady"]
    for actors, row in figures.items():
        row["scaling_efficiency"] = row["images_per_s_steady"] / (int(actors) * one)
    return figures


def online(bundle: Path, paths: list[Path]) -> dict[str, dict[str, dict[str, float]]]:
    """Each serving setting twice, in the order A B B A, so drift over the run hits both alike; the mean of the two."""
    from anchor_edge.scale.serve import (
        BATCH_SIZE_HEADER,
        ServeOptions,
        start_server,
        stop_server,
    )

    bodies = [path.read_bytes() for path in paths]
    passes: dict[str, list[dict[str, dict[str, float]]]] = {label: [] for label in SERVING}
    for label in [*SERVING, *reversed(SERVING)]:
        max_batch_size, wait_ms = SERVING[label]
        options = ServeOptions(
            port=_free_port(),
            replicas=REPLICAS,
            max_batch_size=max_batch_size,
            batch_wait_ms=wait_ms,
            backend="onnxruntime",
            max_queued=max(CONCURRENCY),
        )  # every request answered, none 503
        start_server(str(bundle), options)
        try:
            _load(options.port, bodies, WARMUP_REQUESTS, concurrency=4, header=BATCH_SIZE_HEADER)
            passes[label].append(
                {
                    str(c): _load(options.port, bodies, REQUESTS_PER_LEVEL, concurrency=c, header=BATCH_SIZE_HEADER)
                    for c in CONCURRENCY
                }
            )
        finally:
            stop_server()
    return {
        label: {
            level: {key: sum(run[level][key] for run in runs) / len(runs) for key in runs[0][level]}
            for level in runs[0]
        }
        for label, runs in passes.items()
    }


def _load(port: int, bodies: list[bytes], requests: int, *, concurrency: int, header: str) -> dict[str, float]:
    """Send `requests` POSTs from `concurrency` threads, each on its own keep-alive connection."""
    latencies: list[float] = []
    batches: list[int] = []
    lock = threading.Lock()
    counter = iter(range(requests))

    def worker() -> None:
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
        try:
            for index in counter:  # shared iterator: `requests` in all, whatever the thread count
                began = time.perf_counter()
                connection.request("POST", "/predict", body=bodies[index % len(bodies)])
                response = connection.getresponse()
                response.read()
                if response.status != 200:
                    raise RuntimeError(f"the server answered {response.status}")
                with lock:
                    latencies.append((time.perf_counter() - began) * 1000)
                    batches.append(int(response.getheader(header, "1")))
        finally:
            connection.close()

    start = time.perf_counter()
    with ThreadPoolExecutor(max_workers=concurrency) as pool:
        for future in [pool.submit(worker) for _ in range(concurrency)]:
            future.result()
    seconds = time.perf_counter() - start
    stats = summarize(latencies)
    return {
        "requests": len(latencies),
        "requests_per_s": len(latencies) / seconds,
        "latency_ms_p50": stats["p50"],
        "latency_ms_p99": stats["p99"],
        "mean_batch": sum(batches) / len(batches),
    }


def _free_port() -> int:
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def text_report(result: dict[str, Any]) -> str:
    reference = result["in_process"]
    lines = [
        (
            f"anchor-edge on Ray, bundle {result['bundle']}, {result['images']} images, "
            f"{result['environment']['cpu_model']} ({result['environment']['cpu_cores']} cores)"
        ),
        f"local cluster start: {result['cluster_start_seconds']:.1f} s",
        (
            f"in-process, 1 thread: {reference['images_per_s_batch16']:.1f} "
            f"images/s at batch {BATCH_SIZE}; one at a time "
            f"{reference['requests_per_s_sequential']:.1f}/s, p50 {reference['latency_ms_p50']:.1f} ms p99 "
            f"{reference['latency_ms_p99']:.1f} ms"
        ),
        "offline (anchor-edge batch, 1 thread per actor):",
    ]
    for actors, row in result["offline"].items():
        lines.append(
            f"  {actors} actor(s): {row['images_per_s_steady']:.1f} images/s steady ({row['scaling_efficiency']:.0%} "
            f"scaling efficiency), start-up {row['startup_seconds']:.1f} s, whole job {row['job_seconds']:.1f} s"
        )
    lines.append(
        f"online (anchor-edge serve, {REPLICAS} replicas x 1 thread, {REQUESTS_PER_LEVEL} requests per level):"
    )
    for label, levels in result["online"].items():
        lines.append(f"  {label}")
        for concurrency, row in levels.items():
            lines.append(
                f"    concurrency {concurrency:>2}: {row['requests_per_s']:.1f} requests/s, "
                f"p50 {row['latency_ms_p50']:.1f} ms "
                f"p99 {row['latency_ms_p99']:.1f} ms, mean batch {row['mean_batch']:.1f}"
            )
    if "access_and_metrics" in result:
        lines.append(overhead_line(result["access_and_metrics"]))
    return "\n".join(lines)


def overhead_line(figures: dict[str, float]) -> str:
    return (
        f"API key check + metrics per request: {figures['request_path_us']:.1f} us on the request path "
        f"(key {figures['auth_us']:.1f} us, tally {figures['tally_us']:.1f} us), "
        f"{figures['store_us']:.1f} us more in the metrics store"
    )


def write_chart(path: Path, result: dict[str, Any]) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, (left, middle, right) = plt.subplots(1, 3, figsize=(14, 4.2))
    actors = list(result["offline"])
    left.bar(
        actors,
        [result["offline"][a]["images_per_s_steady"] for a in actors],
        color="tab:blue",
        label="Ray Data, steady",
    )
    left.axhline(
        result["in_process"]["images_per_s_batch16"], color="gray", linestyle="--", label="in-process, 1 thread"
    )
    left.set(xlabel="actors (1 thread each)", ylabel="images/s", title="offline: anchor-edge batch")
    left.legend(fontsize=7)
    for label, levels in result["online"].items():
        levels_x = [int(c) for c in levels]
        middle.plot(levels_x, [row["requests_per_s"] for row in levels.values()], marker="o", label=label)
        right.plot(levels_x, [row["latency_ms_p50"] for row in levels.values()], marker="o", label=f"p50, {label}")
        right.plot(
            levels_x,
            [row["latency_ms_p99"] for row in levels.values()],
            marker="x",
            linestyle=":",
            label=f"p99, {label}",
        )
    middle.axhline(
        result["in_process"]["requests_per_s_sequential"],
        color="gray",
        linestyle="--",
        label="in-process, one at a time",
    )
    middle.set(
        xscale="log",
        xlabel="concurrent clients",
        ylabel="requests/s",
        title=f"online: {REPLICAS} replicas",
        ylim=(0, None),
    )
    right.set(xscale="log", yscale="log", xlabel="concurrent clients", ylabel="latency (ms)", title="online latency")
    for axis in (middle, right):
        axis.set_xticks(CONCURRENCY, [str(c) for c in CONCURRENCY])
        axis.legend(fontsize=7)
    env = result["environment"]
    figure.suptitle(
        f"anchor-edge on a local Ray cluster: {env['cpu_model']} ({env['cpu_cores']} cores), {result['bundle']}",
        fontsize=9,
    )
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=120)
    plt.close(figure)


def build_parser(parser: argparse.ArgumentParser | None = None) -> argparse.ArgumentParser:
    parser = parser or argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--bundle", type=Path, default=Path("bundles/default"))
    parser.add_argument(
        "--images",
        type=_enough_images,
        default=256,
        help=f"test images to write and classify, at least {MIN_IMAGES} (default: %(default)s)",
    )
    parser.add_argument("--json", type=Path, help="write the figures as JSON here")
    parser.add_argument("--chart", type=Path, help="write a PNG chart here")
    parser.add_argument("--note", help="a note stored with the environment")
    return parser


def _enough_images(text: str) -> int:
    count = int(text)
    if count < MIN_IMAGES:
        raise argparse.ArgumentTypeError(f"must be at least {MIN_IMAGES}, got {count}")
    return count


def run(args: argparse.Namespace) -> int:
    from anchor_edge.scale import cluster

    with tempfile.TemporaryDirectory(prefix="anchor-edge-scale-") as folder:
        work = Path(folder)
        paths = write_images(work, args.images)
        try:
            measured_in_process = in_process(args.bundle, paths)
        except (AnchorEdgeError, OSError) as error:  # a missing or unreadable bundle: one line, exit 1
            print(f"benchmark failed: {error}", file=sys.stderr)
            return 1
        result: dict[str, Any] = {
            "benchmark": "anchor-edge on Ray",
            "environment": report.environment(args.note),
            "bundle": str(args.bundle),
            "images": len(paths),
            "in_process": measured_in_process,
            "access_and_metrics": access_and_metrics_overhead(),
        }
        began = time.perf_counter()
        try:
            connected = cluster.start()
        except AnchorEdgeError as error:
            print(f"benchmark failed: {error}", file=sys.stderr)
            return 1
        result["cluster_start_seconds"] = time.perf_counter() - began
        try:
            from anchor_edge.scale.batch import quiet_ray_data

            quiet_ray_data()
            result["offline"] = offline(args.bundle, paths, work)
            result["online"] = online(args.bundle, paths)
        except (AnchorEdgeError, RuntimeError, OSError) as error:
            print(f"benchmark failed: {error}", file=sys.stderr)
            return 1
        finally:
            cluster.stop(connected)
    print(text_report(result))
    if args.json:
        report.write_json(args.json, result)
    if args.chart:
        write_chart(args.chart, result)
    return 0


if __name__ == "__main__":
    sys.exit(run(build_parser().parse_args()))
