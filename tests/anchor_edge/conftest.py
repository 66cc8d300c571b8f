"""Fixtures the runtime tests share: the small bundle's plain pipeline and answers, a local Ray cluster."""

import importlib.util
import ipaddress

import pytest

from anchor_edge import Pipeline


@pytest.fixture(scope="module")
def plain(small_bundle):
    with Pipeline.from_bundle(small_bundle, backend="onnxruntime", threads=1) as pipeline:
        yield pipeline


@pytest.fixture(scope="module")
def images(photos):
    return [image for _, image in photos]


@pytest.fixture(scope="module")
def plain_predictions(plain, images):
    return plain.predict_batch(images)


@pytest.fixture(scope="session")
def ray_cluster():
    """One local Ray cluster (2 CPUs) for the scale tests, shown to be on loopback before any test sends anything."""
    if importlib.util.find_spec("ray") is None:
        pytest.skip("Ray is not installed: pip install -e '.[scale]'")
    from anchor_edge.scale import cluster

    started = cluster.start(num_cpus=2)
    import ray

    reported = [node["NodeManagerAddress"] for node in ray.nodes()]
    reported.append(ray.get_runtime_context().gcs_address.rsplit(":", 1)[0])
    assert reported and all(ipaddress.ip_address(a) in ipaddress.ip_network("127.0.0.0/8") for a in reported), reported
    yield started
    cluster.stop(started)
