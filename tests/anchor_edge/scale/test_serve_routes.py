"""One replica's routes without Ray: the key check before anything is read, 404/405, the deadline, /ready, /metrics.

The pipeline and the batcher are stand-ins that record what was asked of
them; the metrics go to a real MetricsStore, read back with
prometheus_client's own parser.
"""

from __future__ import annotations

import asyncio
import json
from types import SimpleNamespace

import cv2
import numpy as np
import pytest

from anchor_edge.scale.serve_access import AccessKey
from anchor_edge.scale.serve_metrics import MetricsStore
from anchor_edge.scale.serve_routes import Replica, ReplicaSettings

KEY = "route-test-key-9f8e7d"
AUTH = {"authorization": f"Bearer {KEY}"}
PNG = cv2.imencode(".png", np.full((40, 50, 3), 90, np.uint8))[1].tobytes()


def request(method, path, headers=None, body=b"", *, unreadable=False):
    """A Starlette request; `unreadable`: reading its body fails the test."""
    from starlette.requests import Request

    sent = False

    async def receive():
        nonlocal sent
        if unreadable:
            raise AssertionError("the body was read")
        if sent:
            return {"type": "http.disconnect"}
        sent = True
        return {"type": "http.request", "body": body, "more_body": False}

    scope = {
        "type": "http",
        "method": method,
        "path": path,
        "query_string": b"",
        "root_path": "",
        "scheme": "http",
        "server": ("127.0.0.1", 8000),
        "headers": [(k.encode(), v.encode()) for k, v in (headers or {}).items()],
    }
    return Request(scope, receive)


class FakePipeline:
    backend, bundle = "onnxruntime", SimpleNamespace(num_classes=10)


def prediction(patches):
    return SimpleNamespace(
        boxes=[[0, 0, 1, 1]] * patches,
        classified_sizes=(1,) * patches,
        to_dict=lambda: {"class_id": 3, "patches": patches},
    )


class LocalSink:
    def __init__(self):
        self.store = MetricsStore()

    async def push(self, taken):
        self.store.add(taken)

    async def render(self):
        return self.store.render()


def make_replica(*, key=KEY, timeout_s=5.0, classify=None, fail=False):
    """A replica around a stand-in batcher that records the shape of each image it is given."""
    seen = []

    async def default_classify(image):
        seen.append(image.shape)
        if fail:
            raise RuntimeError("the model is not loaded")
        return prediction(3), 1

    settings = ReplicaSettings(
        bundle="b", max_batch_size=8, max_body_bytes=1000, timeout_s=timeout_s, access=AccessKey.from_key(key)
    )
    replica = Replica(FakePipeline(), classify or default_classify, LocalSink(), settings)
    return replica, seen


def answer(replica, *args, **kwargs):
    response = asyncio.run(replica.handle(request(*args, **kwargs)))
    return response.status_code, response.headers, response.body


def test_401_without_the_key_or_with_a_wrong_one_and_nothing_is_read_first():
    replica, seen = make_replica()
    for headers in (None, {"authorization": "Bearer wrong"}, {"authorization": KEY}):
        for method, path in (("POST", "/predict"), ("GET", "/ready"), ("GET", "/metrics"), ("GET", "/nowhere")):
            status, headers_out, body = answer(replica, method, path, headers, unreadable=True)
            assert status == 401 and headers_out["www-authenticate"] == "Bearer", (method, path)
            assert KEY not in body.decode()
    assert seen == []


def test_200_with_the_key_and_health_is_open():
    replica, seen = make_replica()
    status, headers, body = answer(replica, "POST", "/predict", AUTH, PNG)
    assert status == 200 and json.loads(body) == {"class_id": 3, "patches": 3}
    assert headers["x-anchor-edge-batch-size"] == "1" and seen == [(40, 50, 3)]
    status, _, body = answer(replica, "GET", "/health")
    assert status == 200 and json.loads(body)["backend"] == "onnxruntime"


def test_the_image_is_decoded_off_the_event_loop(monkeypatch):
    """A large image takes long to decode: on the loop's thread it would stall every other request and deadline."""
    import threading

    from anchor_edge.method import preprocess

    decoded_on, real_load = [], preprocess.load_image
    monkeypatch.setattr(
        preprocess, "load_image", lambda body: decoded_on.append(threading.get_ident()) or real_load(body)
    )
    replica, seen = make_replica()
    assert answer(replica, "POST", "/predict", AUTH, PNG)[0] == 200
    assert seen == [(40, 50, 3)] and decoded_on and decoded_on[0] != threading.get_ident()


def test_a_wrong_method_on_a_known_route_is_405_with_allow_and_an_unknown_path_404():
    replica, _ = make_replica()
    wrong = (
        ("GET", "/predict", "POST"),
        ("POST", "/health", "GET"),
        ("DELETE", "/metrics", "GET"),
        ("PUT", "/ready/", "GET"),
    )
    for method, path, allowed in wrong:
        status, headers, _ = answer(replica, method, path, AUTH)
        assert (status, headers["allow"]) == (405, allowed), (method, path)
    status, _, body = answer(replica, "GET", "/classify", AUTH)
    assert status == 404 and "POST /predict" in json.loads(body)["error"]


def test_past_the_deadline_the_client_gets_504_and_the_work_is_cancelled():
    cancelled = []

    async def slow(image):
        try:
            await asyncio.sleep(30)
        except asyncio.CancelledError:
            cancelled.append(True)
            raise

    replica, _ = make_replica(timeout_s=0.05, classify=slow)
    status, _, body = answer(replica, "POST", "/predict", AUTH, PNG)
    assert status == 504 and "0.05 s deadline" in json.loads(body)["error"] and cancelled == [True]


def test_ready_sends_one_tiny_image_through_and_only_then_answers_200():
    replica, seen = make_replica()
    assert not replica.ready
    assert answer(replica, "GET", "/ready", AUTH)[0] == 200
    assert answer(replica, "GET", "/ready", AUTH)[0] == 200
    assert seen == [(64, 64, 3)]  # one probe, not one per call
    found = samples(answer(replica, "GET", "/metrics", AUTH)[2].decode())
    assert found.get(("anchor_edge_images_classified_total", ()), 0) == 0  # the probe is not a client's image


def test_ready_is_503_while_the_pipeline_fails():
    replica, seen = make_replica(fail=True)
    status, headers, body = answer(replica, "GET", "/ready", AUTH)
    assert status == 503 and headers["retry-after"] == "1" and "not loaded" in json.loads(body)["error"]
    assert answer(replica, "GET", "/ready", AUTH)[0] == 503 and len(seen) == 2  # tried again, not cached


def test_a_served_prediction_makes_the_replica_ready_without_a_probe():
    replica, seen = make_replica()
    answer(replica, "POST", "/predict", AUTH, PNG)
    assert replica.ready and answer(replica, "GET", "/ready", AUTH)[0] == 200 and seen == [(40, 50, 3)]


def samples(text):
    from prometheus_client.parser import text_string_to_metric_families

    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for f in text_string_to_metric_families(text)
        for s in f.samples
    }


def test_metrics_count_what_was_sent():
    replica, _ = make_replica()
    sent = [("POST", "/predict", AUTH, PNG)] * 3 + [
        ("POST", "/predict", AUTH, b"not an image"),
        ("POST", "/predict", AUTH, b"x" * 1001),
        ("POST", "/predict", None, PNG),
        ("GET", "/predict", AUTH, b""),
        ("GET", "/health", None, b""),
        ("GET", "/a/b", AUTH, b""),
        ("GET", "/c", AUTH, b""),
    ]
    for method, path, headers, body in sent:
        answer(replica, method, path, headers, body)
    status, headers, body = answer(replica, "GET", "/metrics", AUTH)
    assert status == 200 and headers["content-type"].startswith("text/plain")
    found = samples(body.decode())

    def requests(route, code):
        return found.get(("anchor_edge_requests_total", (("route", route), ("status", code))), 0)

    assert requests("/predict", "200") == 3 and requests("/predict", "400") == 1 and requests("/predict", "413") == 1
    assert requests("/predict", "401") == 1 and requests("/predict", "405") == 1 and requests("/health", "200") == 1
    assert requests("other", "404") == 2 and requests("/metrics", "200") == 0  # the scrape counts in the next one
    assert found["anchor_edge_request_seconds_count", (("route", "/predict"),)] == 7
    assert found["anchor_edge_images_classified_total", ()] == 3
    assert found["anchor_edge_patches_classified_total", ()] == 9
    for kind, count in (
        ("bad_image", 1),
        ("body_too_large", 1),
        ("unauthorized", 1),
        ("method_not_allowed", 1),
        ("not_found", 2),
    ):
        assert found["anchor_edge_errors_total", (("kind", kind),)] == count, kind
    again = samples(answer(replica, "GET", "/metrics", AUTH)[2].decode())
    assert again["anchor_edge_requests_total", (("route", "/metrics"), ("status", "200"))] == 1


def test_the_batch_size_histogram_buckets_each_batch():
    store = MetricsStore()
    store.add({"requests": [], "latencies": [], "batches": [1, 3, 8, 8], "errors": {}, "images": 20, "patches": 0})
    found = samples(store.render().decode())
    assert found["anchor_edge_batch_size_count", ()] == 4 and found["anchor_edge_batch_size_sum", ()] == 20
    assert found["anchor_edge_batch_size_bucket", (("le", "2.0"),)] == 1
    assert found["anchor_edge_batch_size_bucket", (("le", "4.0"),)] == 2
    assert found["anchor_edge_batch_size_bucket", (("le", "8.0"),)] == 4


@pytest.mark.parametrize("key", [None])
def test_without_a_key_every_route_is_open(key):
    replica, _ = make_replica(key=key)
    assert answer(replica, "POST", "/predict", None, PNG)[0] == 200
    assert answer(replica, "GET", "/metrics")[0] == 200
