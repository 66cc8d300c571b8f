"""Overload and deadlines over HTTP on 127.0.0.1: a fast 503 + Retry-After past --max-queued, a 504 past --timeout-s.

Each test starts a server of its own (the limits are per deployment) and
stops it; every request loop is bounded and every request has a timeout.
"""

from __future__ import annotations

import contextlib
import json
import socket
import time
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor

import cv2
import pytest

from anchor_edge import Pipeline

pytestmark = pytest.mark.timeout(300)

BURST = 64
REQUEST_TIMEOUT_S = 120


def post(url, body):
    """(status, headers, JSON body, seconds) of one bounded POST /predict."""
    request = urllib.request.Request(url + "/predict", data=body, method="POST")
    began = time.perf_counter()
    try:
        with urllib.request.urlopen(request, timeout=REQUEST_TIMEOUT_S) as response:
            reply = response.status, response.headers, response.read()
    except urllib.error.HTTPError as error:
        reply = error.code, error.headers, error.read()
    status, headers, body = reply
    return status, headers, body, time.perf_counter() - began


@contextlib.contextmanager
def serving(bundle, **changes):
    from anchor_edge.scale.serve import ServeOptions, start_server, stop_server

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    url = start_server(str(bundle), ServeOptions(port=port, backend="onnxruntime", **changes))
    assert url.startswith("http://127.0.0.1:")
    try:
        yield url
    finally:
        stop_server()


@pytest.fixture(scope="module")
def encoded(photos):
    return [cv2.imencode(".png", image)[1].tobytes() for _, image in photos]


@pytest.fixture(scope="module")
def expected(small_bundle, photos):
    with Pipeline.from_bundle(small_bundle, backend="onnxruntime", threads=1) as pipe:
        return [prediction.to_dict() for prediction in pipe.predict_batch([image for _, image in photos])]


def test_a_burst_beyond_max_queued_gets_fast_503s_and_every_other_request_its_answer(
    ray_cluster, small_bundle, encoded, expected
):
    """One replica holds 16 requests (max batch 1) and 1 more may wait: of 64 at once, some must be turned away."""
    order = [i % len(encoded) for i in range(BURST)]
    with serving(small_bundle, max_batch_size=1, batch_wait_ms=0, max_queued=1, timeout_s=60) as url:
        with ThreadPoolExecutor(max_workers=BURST) as pool:
            replies = list(pool.map(lambda i: post(url, encoded[i]), order))

    refused = [reply for reply in replies if reply[0] == 503]
    answered = [(i, reply) for i, reply in zip(order, replies) if reply[0] != 503]
    assert refused and answered, [reply[0] for reply in replies]
    assert all(headers["Retry-After"] == "1" for _, headers, _, _ in refused)
    for i, (status, _, body, _) in answered:
        assert status == 200, body
        served = json.loads(body)
        assert (served["class_id"], served["label"]) == (expected[i]["class_id"], expected[i]["label"])
        assert [p["box"] for p in served["patches"]] == [p["box"] for p in expected[i]["patches"]]
    slowest_refusal = max(seconds for *_, seconds in refused)
    slowest_answer = max(seconds for _, (*_, seconds) in answered)
    assert slowest_refusal < slowest_answer, (slowest_refusal, slowest_answer)  # turned away, not made to wait


def test_past_the_deadline_the_client_gets_504_and_the_server_goes_on(ray_cluster, small_bundle, encoded):
    """A 1 ms deadline: no prediction (batching, a worker thread, the model) fits in it."""
    with serving(small_bundle, max_batch_size=1, batch_wait_ms=0, timeout_s=0.001) as url:
        for body in encoded[:2]:
            status, _, reply, _ = post(url, body)
            assert status == 504 and "0.001 s deadline" in json.loads(reply)["error"]
        with urllib.request.urlopen(url + "/health", timeout=REQUEST_TIMEOUT_S) as response:
            assert response.status == 200
