"""The Fashion-MNIST folder: IDX files read as written, products pasted where the box says, a missing package named."""

from __future__ import annotations

import gzip
from functools import partial
from pathlib import Path

import numpy as np
import pytest

from anchor_edge.errors import InputError
from export.data import fashion
from export.data.digits import DIGIT_SIDES, NETWORK_OFFSET
from export.data.digits_folder import write_folder


def write_idx(path: Path, array: np.ndarray) -> None:
    """An IDX file of unsigned bytes, gzip'd, as Fashion-MNIST ships them: magic 0 0 8 ndim, big-endian sizes."""
    header = bytes([0, 0, 8, array.ndim]) + b"".join(int(n).to_bytes(4, "big") for n in array.shape)
    path.write_bytes(gzip.compress(header + array.astype(np.uint8).tobytes()))


@pytest.fixture
def fake_data(tmp_path) -> Path:
    """Two products per class and split: a 20 x 8 block of grey 200 (rows 4-23, columns 10-17) on black."""
    products = np.zeros((20, 28, 28), np.uint8)
    products[:, 4:24, 10:18] = 200
    labels = np.arange(20) % 10
    for split in ("train", "test"):
        images_file, labels_file = fashion.FILES[split]
        write_idx(tmp_path / images_file, products)
        write_idx(tmp_path / labels_file, labels)
    return tmp_path


def test_an_idx_file_reads_back_as_written_and_a_bad_one_is_refused(tmp_path):
    array = np.arange(2 * 3 * 4, dtype=np.uint8).reshape(2, 3, 4)
    write_idx(tmp_path / "a.gz", array)
    assert np.array_equal(fashion.read_idx(tmp_path / "a.gz"), array)
    (tmp_path / "b.gz").write_bytes(gzip.compress(b"\x00\x00\x0d\x01\x00\x00\x00\x02ab"))  # 0x0d: float32, not bytes
    with pytest.raises(InputError, match="not an IDX file of unsigned bytes"):
        fashion.read_idx(tmp_path / "b.gz")
    (tmp_path / "c.gz").write_bytes(gzip.compress(bytes([0, 0, 8, 1, 0, 0, 0, 5]) + b"abc"))
    with pytest.raises(InputError, match="holds 3 values for the shape"):
        fashion.read_idx(tmp_path / "c.gz")


@pytest.mark.parametrize("index", [0, 13, 27])
def test_the_product_is_pasted_where_its_box_says_at_its_scale(fake_data, index):
    sample = fashion.make_sample("train", index, data_dir=fake_data)
    assert (sample.label, sample.scale) == (index % 10, (index // 10) % 3)
    x0, y0, x1, y1 = sample.box
    low, high = DIGIT_SIDES[sample.scale]
    assert low <= y1 - y0 <= high, "the product's longer side (20 of its 28 rows) fits its scale's receptive field"
    assert abs((x1 - x0) / (y1 - y0) - 8 / 20) < 0.1, "its 8 x 20 aspect is kept"
    inside = sample.image[
        y0 + NETWORK_OFFSET + 2 : y1 + NETWORK_OFFSET - 2, x0 + NETWORK_OFFSET + 2 : x1 + NETWORK_OFFSET - 2
    ]
    # Grey 200 tinted by 0.6-1.2 per channel: every inner pixel of the box is the product's own, one colour.
    assert (inside == inside[0, 0]).all() and ((inside[0, 0] >= 119) & (inside[0, 0] <= 240)).all()
    again = fashion.make_sample("train", index, data_dir=fake_data)
    assert np.array_equal(again.image, sample.image), "the same arguments give the same bytes"


def test_the_folder_has_a_subfolder_per_class_in_train_and_val(fake_data, tmp_path):
    make = partial(fashion.make_sample, data_dir=fake_data)
    assert write_folder(tmp_path / "out", 20, 10, make=make, class_names=fashion.CLASS_NAMES) == {
        "train": 20,
        "val": 10,
    }
    assert sorted(p.name for p in (tmp_path / "out" / "train").iterdir()) == sorted(fashion.CLASS_NAMES)
    assert len(list((tmp_path / "out" / "train" / "bag").glob("*.png"))) == 2
    assert len(list((tmp_path / "out" / "val").rglob("*.png"))) == 10


def test_a_missing_package_says_what_to_install(tmp_path, capsys):
    with pytest.raises(InputError, match="apt-get install dataset-fashion-mnist"):
        fashion.make_sample("train", 0, data_dir=tmp_path)
    from export.data import fashion_folder

    installed = fashion.DATA_DIR.is_dir()
    assert fashion_folder.main([str(tmp_path / "out"), "--train", "20", "--test", "10"]) == (0 if installed else 1)
    assert ("apt-get install dataset-fashion-mnist" in capsys.readouterr().err) is not installed


@pytest.mark.skipif(not fashion.DATA_DIR.is_dir(), reason="Debian's dataset-fashion-mnist is not installed")
def test_the_real_data_has_its_published_split_and_ten_classes():
    for split, count in (("train", 60_000), ("test", 10_000)):
        images, labels = fashion.products(split)
        assert images.shape == (count, 28, 28) and sorted(set(labels.tolist())) == list(range(10))
