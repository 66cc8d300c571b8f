"""`anchor-edge serve` on a local Ray cluster, HTTP on 127.0.0.1: answers, batches, refusals, the key, metrics."""

from __future__ import annotations

import json
import os
import socket
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import cv2
import pytest

from anchor_edge import Pipeline
from anchor_edge.errors import InputError

pytestmark = pytest.mark.timeout(300)

MAX_BODY = 2 * 2**20
REQUEST_TIMEOUT_S = 60
KEY = "serve-test-key-5b2c9a71e04d"
AUTH = {"Authorization": f"Bearer {KEY}"}


def post(url, body, headers=AUTH):
    """(status, JSON body, batch-size header) of one bounded POST."""
    request = urllib.request.Request(
        url + "/predict", data=body, method="POST", headers={"Content-Type": "image/png", **headers}
    )
    try:
        with urllib.request.urlopen(request, timeout=REQUEST_TIMEOUT_S) as response:
            return response.status, json.loads(response.read()), response.headers.get("x-anchor-edge-batch-size")
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read()), None


def get(url, path, headers=AUTH, method="GET"):
    """(status, headers, body bytes) of one bounded request without a body."""
    request = urllib.request.Request(url + path, method=method, headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=REQUEST_TIMEOUT_S) as response:
            return response.status, response.headers, response.read()
    except urllib.error.HTTPError as error:
        return error.code, error.headers, error.read()


def free_loopback_port():
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.fixture(scope="module")
def server(ray_cluster, small_bundle):
    from anchor_edge.scale.serve import ServeOptions, start_server, stop_server
    from anchor_edge.scale.serve_access import AccessKey

    options = ServeOptions(
        port=free_loopback_port(),
        max_batch_size=8,
        batch_wait_ms=50,
        max_body_bytes=MAX_BODY,
        backend="onnxruntime",
        access=AccessKey.from_key(KEY),
        max_queued=64,  # the 64-request burst below must all be answered, none turned away
    )
    url = start_server(str(small_bundle), options)
    assert url.startswith("http://127.0.0.1:")
    yield url
    stop_server()


@pytest.fixture(scope="module")
def encoded(photos):
    return [cv2.imencode(".png", image)[1].tobytes() for _, image in photos]


@pytest.fixture(scope="module")
def expected(small_bundle, photos):
    with Pipeline.from_bundle(small_bundle, backend="onnxruntime", threads=1) as pipe:
        return [prediction.to_dict() for prediction in pipe.predict_batch([image for _, image in photos])]


def assert_same_prediction(served, local):
    for key in ("class_id", "label", "branch", "anchor_class"):
        assert served[key] == local[key], key
    assert served["score"] == pytest.approx(local["score"], abs=1e-4)
    assert [p["box"] for p in served["patches"]] == [p["box"] for p in local["patches"]]
    assert [p["class_id"] for p in served["patches"]] == [p["class_id"] for p in local["patches"]]


def test_ready_answers_200_only_once_the_pipeline_has_classified_an_image(server):
    """First in the module: the replica has classified nothing yet, so /ready sends its probe through the batcher.

    The probe is one batch of one image before the 200, and no client's image; a second /ready runs none.
    """
    before = metric_samples(server)
    for _ in range(2):
        status, _, body = get(server, "/ready")
        assert status == 200 and json.loads(body) == {"status": "ready"}
    after = metric_samples(server)
    assert after["anchor_edge_batch_size_count"] - before.get("anchor_edge_batch_size_count", 0) == 1
    assert after.get("anchor_edge_images_classified_total", 0) == before.get("anchor_edge_images_classified_total", 0)


def test_health_names_the_bundle_and_needs_no_key(server, small_bundle):
    status, _, body = get(server, "/health", headers={})
    health = json.loads(body)
    assert status == 200
    assert health["status"] == "ok" and health["bundle"] == str(small_bundle) and health["max_batch"] == 8


def test_401_without_the_key_or_with_a_wrong_one_200_with_it(server, encoded):
    for headers in ({}, {"Authorization": "Bearer not-the-key"}, {"Authorization": KEY}):
        status, reply, _ = post(server, encoded[0], headers=headers)
        assert status == 401 and "Authorization: Bearer" in reply["error"] and KEY not in json.dumps(reply)
        assert get(server, "/metrics", headers=headers)[0] == 401
    assert post(server, encoded[0])[0] == 200


def test_a_wrong_method_on_a_known_route_is_405_with_allow(server):
    status, headers, _ = get(server, "/predict")
    assert status == 405 and headers["Allow"] == "POST"
    status, headers, _ = get(server, "/health", method="DELETE")
    assert status == 405 and headers["Allow"] == "GET"


def metric_samples(url):
    """{name or (name, sorted labels): value} of one scrape of /metrics."""
    from prometheus_client.parser import text_string_to_metric_families

    status, _, body = get(url, "/metrics")
    assert status == 200
    found = {}
    for family in text_string_to_metric_families(body.decode()):
        for sample in family.samples:
            found[(sample.name, tuple(sorted(sample.labels.items()))) if sample.labels else sample.name] = sample.value
    return found


def test_metrics_count_the_requests_sent(server, encoded, expected):
    """Differences between two scrapes, against the requests sent between them (and the first scrape)."""
    before = metric_samples(server)
    for body in encoded[:3]:
        assert post(server, body)[0] == 200
    assert post(server, b"not an image")[0] == 400
    assert post(server, encoded[0], headers={})[0] == 401
    assert get(server, "/predict")[0] == 405
    assert get(server, "/nowhere")[0] == 404
    after = metric_samples(server)
    patches = sum(len(local["patches"]) for local in expected[:3])

    def grew(name, **labels):
        key = (name, tuple(sorted(labels.items()))) if labels else name
        return after.get(key, 0) - before.get(key, 0)

    assert grew("anchor_edge_requests_total", route="/predict", status="200") == 3
    assert grew("anchor_edge_requests_total", route="/predict", status="400") == 1
    assert grew("anchor_edge_requests_total", route="/predict", status="401") == 1
    assert grew("anchor_edge_requests_total", route="/predict", status="405") == 1
    assert grew("anchor_edge_requests_total", route="other", status="404") == 1
    assert grew("anchor_edge_requests_total", route="/metrics", status="200") == 1  # the first scrape
    assert grew("anchor_edge_request_seconds_count", route="/predict") == 6
    assert grew("anchor_edge_images_classified_total") == 3
    assert grew("anchor_edge_patches_classified_total") == patches
    assert grew("anchor_edge_batch_size_count") == 3  # one at a time: each request its own batch
    for kind in ("bad_image", "unauthorized", "method_not_allowed", "not_found"):
        assert grew("anchor_edge_errors_total", kind=kind) == 1, kind


def test_served_predictions_equal_in_process_ones(server, encoded, expected):
    for body, local in zip(encoded, expected):
        status, served, _ = post(server, body)
        assert status == 200
        assert_same_prediction(served, local)


def test_64_concurrent_requests_are_batched_and_each_gets_its_own_answer(server, encoded, expected):
    order = [i % len(encoded) for i in range(64)]
    with ThreadPoolExecutor(max_workers=64) as pool:
        replies = list(pool.map(lambda i: post(server, encoded[i]), order))

    assert [status for status, _, _ in replies] == [200] * 64
    for i, (_, served, _) in zip(order, replies):
        assert_same_prediction(served, expected[i])
    sizes = [int(size) for _, _, size in replies]
    assert max(sizes) > 1 and max(sizes) <= 8, sizes


def test_a_bad_image_is_a_400_with_the_reason_and_the_next_request_succeeds(server, encoded, expected):
    status, reply, _ = post(server, b"this is not an image")
    assert status == 400 and "decode" in reply["error"]
    whole = encoded[0]
    status, reply, _ = post(server, whole[: len(whole) // 3])
    assert status == 400 and reply["error"]

    status, served, _ = post(server, encoded[0])
    assert status == 200
    assert_same_prediction(served, expected[0])


def test_an_oversized_body_is_refused_and_the_server_keeps_serving(server, encoded, expected):
    status, reply, _ = post(server, b"\0" * (MAX_BODY + 1))
    assert status == 413 and str(MAX_BODY) in reply["error"]
    assert post(server, encoded[1])[0] == 200


def test_unknown_routes_are_404_and_list_the_routes(server):
    status, _, body = get(server, "/classify")
    assert status == 404 and "POST /predict" in json.loads(body)["error"]


def test_max_ongoing_requests_never_caps_a_batch():
    from anchor_edge.scale.serve import max_ongoing_requests

    for max_batch in (1, 8, 64):
        assert max_ongoing_requests(max_batch) >= max_batch
    assert max_ongoing_requests(8) == 16  # Ray's default max_ongoing_requests (5) would cap a batch of 8 at 5
    assert max_ongoing_requests(64) == 128  # one batch running, one forming
    assert max_ongoing_requests(1) == 16  # without batching, the replica still queues requests itself


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"replicas": 3}, "need 3 CPUs"),
        ({"max_batch_size": 0}, "max-batch-size must be an integer >= 1, got 0"),
        ({"batch_wait_ms": -1}, "batch-wait-ms"),
    ],
)
def test_serve_options_that_would_hang_or_misbehave_are_refused(change, message):
    from anchor_edge.scale.serve import ServeOptions

    with pytest.raises(InputError, match=message):
        ServeOptions(**change).check(cluster_cpus=2)


def test_serve_command_serves_until_ctrl_c_and_then_stops_everything(server, small_bundle, encoded, expected, tmp_path):
    """On a local cluster of its own, even with RAY_ADDRESS naming the tests' cluster (as Ray sets it).

    With a key from --api-key-env and --debug: the key is in none of its
    output nor any file of its Ray session (logs included), which RAY_TMPDIR
    puts in a folder of this test's (short: Ray's socket paths must fit 107 bytes).
    """
    import queue
    import shutil
    import signal
    import subprocess
    import sys
    import tempfile
    import threading

    import ray

    port = free_loopback_port()
    command = [
        sys.executable,
        "-m",
        "anchor_edge",
        "serve",
        "--bundle",
        str(small_bundle),
        "--port",
        str(port),
        "--max-batch-size",
        "4",
        "--backend",
        "onnxruntime",
        "--api-key-env",
        "SERVE_TEST_KEY",
        "--debug",
    ]
    key = "command-key-71f3e9c0a8b2d645"
    ray_folder = tempfile.mkdtemp(prefix="ae-", dir="/tmp")
    log = tmp_path / "stderr.txt"
    with log.open("w") as stderr:
        environment = os.environ | {
            "RAY_ADDRESS": ray.get_runtime_context().gcs_address,
            "SERVE_TEST_KEY": key,
            "RAY_TMPDIR": ray_folder,
        }
        # A shell's background job (a CI runner's `cmd &`) ignores SIGINT and a child inherits an ignored signal,
        # but not a handler: with one set here, the server starts with Python's own Ctrl-C handling.
        inherited = signal.signal(signal.SIGINT, signal.default_int_handler)
        try:
            process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=stderr, text=True, env=environment)
        finally:
            signal.signal(signal.SIGINT, inherited)
    lines: queue.Queue = queue.Queue()
    printed: list[str] = []
    threading.Thread(
        target=lambda: [(lines.put(line), printed.append(line)) for line in process.stdout], daemon=True
    ).start()
    url = f"http://127.0.0.1:{port}"
    try:
        announced = lines.get(timeout=120)  # printed once the deployment is running
        assert announced.startswith(f"serving {small_bundle} at {url}: POST {url}/predict"), announced
        assert "API key required" in announced
        assert post(url, encoded[2], headers={"Authorization": "Bearer wrong-" + key})[0] == 401
        status, served, _ = post(url, encoded[2], headers={"Authorization": f"Bearer {key}"})
        assert status == 200
        assert_same_prediction(served, expected[2])
    finally:
        process.send_signal(signal.SIGINT)
        process.wait(timeout=90)
    assert process.returncode == 0, log.read_text()
    try:
        session_files = [path for path in Path(ray_folder).rglob("*") if path.is_file() and not path.is_symlink()]
        assert any(path.suffix in (".log", ".out", ".err") for path in session_files), "no Ray logs where expected"
        holding = [str(path) for path in session_files if key.encode() in path.read_bytes()]
        assert holding == [] and key not in "".join(printed) and key not in log.read_text(), holding
    finally:
        shutil.rmtree(ray_folder, ignore_errors=True)
    with pytest.raises(OSError):
        urllib.request.urlopen(url + "/health", timeout=5)
    with urllib.request.urlopen(server + "/health", timeout=REQUEST_TIMEOUT_S) as response:
        assert response.status == 200
