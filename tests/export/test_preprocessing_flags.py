"""--mean, --std, --pixel-range, --class-names, --channel-order: scaled as said, and never against the source."""

from __future__ import annotations

import json
import logging

import pytest
import torch

from anchor_edge.errors import InputError
from export.models.downstream import IMAGENET_MEAN, Downstream
from export.models.preprocessing import PreprocessingFlags, apply_preprocessing, read_class_names


def _net(stated=frozenset(), **fields) -> Downstream:
    values = dict(
        module=torch.nn.Identity(),
        name="net",
        num_classes=3,
        mean=IMAGENET_MEAN,
        std=(58.0, 57.0, 57.0),
        class_names=None,
        pretrained="random",
        stated=frozenset(stated),
    )
    return Downstream(**(values | fields))


def test_mean_and_std_on_the_0_1_scale_become_pixel_units():
    net = apply_preprocessing(_net(), PreprocessingFlags(mean=(0.5, 0.25, 0.0), std=(0.5, 0.5, 1.0), pixel_range="0-1"))
    assert net.mean == pytest.approx((127.5, 63.75, 0.0)) and net.std == pytest.approx((127.5, 127.5, 255.0))


def test_mean_and_std_on_the_0_255_scale_stay():
    net = apply_preprocessing(_net(), PreprocessingFlags(mean=(104.0, 117.0, 123.0), pixel_range="0-255"))
    assert net.mean == (104.0, 117.0, 123.0) and net.std == (58.0, 57.0, 57.0)


@pytest.mark.parametrize(
    "flags",
    [
        PreprocessingFlags(mean=(0.5, 0.5, 0.5)),
        PreprocessingFlags(pixel_range="0-1"),
        PreprocessingFlags(mean=(0.5, 0.5), pixel_range="0-1"),
        PreprocessingFlags(std=(0.5, 0.0, 0.5), pixel_range="0-1"),
        PreprocessingFlags(mean=(1, 2, 3), pixel_range="0-100"),
        PreprocessingFlags(channel_order="RGBA"),
    ],
)
def test_malformed_or_unscaled_flags_are_errors(flags):
    with pytest.raises(InputError):
        apply_preprocessing(_net(), flags)


def test_a_flag_may_repeat_the_source_but_not_contradict_it():
    timm_like = _net(stated={"mean", "std", "channel_order"}, mean=(127.5,) * 3, std=(127.5,) * 3)
    same = apply_preprocessing(timm_like, PreprocessingFlags(mean=(0.5, 0.5, 0.5), pixel_range="0-1"))
    assert same.mean == pytest.approx((127.5,) * 3)
    with pytest.raises(InputError, match="mean flag disagrees with downstream net, whose source says mean"):
        apply_preprocessing(timm_like, PreprocessingFlags(mean=(0.485, 0.456, 0.406), pixel_range="0-1"))
    with pytest.raises(InputError, match="channel_order flag disagrees"):
        apply_preprocessing(timm_like, PreprocessingFlags(channel_order="bgr"))
    named = _net(stated={"class_names"}, class_names=["a", "b", "c"])
    with pytest.raises(InputError, match="class_names flag disagrees"):
        apply_preprocessing(named, PreprocessingFlags(class_names=["x", "y", "z"]))


def test_an_assumed_mean_and_std_follow_the_channels_to_bgr_and_given_ones_stay_as_given(caplog):
    """ImageNet's red mean is 123.675: a BGR network's first channel is blue, so its assumed mean starts 103.53."""
    with caplog.at_level(logging.WARNING, logger="anchor_edge"):
        bgr = apply_preprocessing(_net(), PreprocessingFlags(channel_order="bgr"))
    assert bgr.channel_order == "BGR" and bgr.mean == pytest.approx((103.53, 116.28, 123.675))
    assert bgr.std == (57.0, 57.0, 58.0)
    assert "mean (103.53, 116.28, 123.675), std (57.0, 57.0, 58.0), BGR" in caplog.text
    given = apply_preprocessing(
        _net(), PreprocessingFlags(mean=(104.0, 117.0, 123.0), std=(1, 2, 3), pixel_range="0-255", channel_order="bgr")
    )
    assert given.mean == (104.0, 117.0, 123.0) and given.std == (1.0, 2.0, 3.0)  # in the network's order, as given


def test_an_assumed_normalisation_is_said_aloud(caplog):
    with caplog.at_level(logging.WARNING, logger="anchor_edge"):
        apply_preprocessing(_net(), PreprocessingFlags())
    assert "records no mean and std; assuming ImageNet's" in caplog.text
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="anchor_edge"):
        apply_preprocessing(_net(), PreprocessingFlags(mean=(0.5,) * 3, std=(0.5,) * 3, pixel_range="0-1"))
        apply_preprocessing(_net(stated={"mean", "std"}), PreprocessingFlags())
    assert "assuming" not in caplog.text


def test_class_names_from_lines_or_json(tmp_path):
    (tmp_path / "names.txt").write_text("tabby cat\n\nfox\nowl\n", encoding="utf-8")
    (tmp_path / "names.json").write_text(json.dumps(["tabby cat", "fox", "owl"]), encoding="utf-8")
    assert (
        read_class_names(tmp_path / "names.txt")
        == read_class_names(str(tmp_path / "names.json"))
        == ["tabby cat", "fox", "owl"]
    )
    net = apply_preprocessing(_net(), PreprocessingFlags(class_names=tmp_path / "names.txt"))
    assert net.class_names == ["tabby cat", "fox", "owl"]


def test_class_names_must_fit_the_network(tmp_path):
    (tmp_path / "two.txt").write_text("a\nb\n", encoding="utf-8")
    (tmp_path / "twice.txt").write_text("a\nb\na\n", encoding="utf-8")
    with pytest.raises(InputError, match="2 class names given for net, which has 3 classes"):
        apply_preprocessing(_net(), PreprocessingFlags(class_names=tmp_path / "two.txt"))
    with pytest.raises(InputError, match=r"repeats class names \['a'\]"):
        read_class_names(tmp_path / "twice.txt")
    with pytest.raises(InputError, match="not found"):
        read_class_names(tmp_path / "none.txt")
