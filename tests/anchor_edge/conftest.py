"""Fixtures the early-exit and budget tests share: the small bundle's plain pipeline and its answers on the photos."""
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
