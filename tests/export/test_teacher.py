"""The downstream network as AnchorNet's teacher: its class activation map's peak is where the object was drawn."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from torch import nn

from anchor_edge.errors import InputError
from export.data.folder import ImageFolder
from export.data.source import HELD_OUT, TRAIN, LabelledImage
from export.training.box_supervision import branch_targets
from export.training.common import CENTRE_MARGIN, _window_around, to_network_tensor
from export.training.distractors import with_distractors
from export.training.taught_folder import teach
from export.training.teacher import Teacher, peak_in

#: The tiny network's input is the raw pixels: mean 0, std 1.
RAW = ((0.0, 0.0, 0.0), (1.0, 1.0, 1.0))
RED, BLUE = (0, 0, 255), (255, 0, 0)


class ColourCounter(nn.Module):
    """Class 0 = how red the image is, class 1 = how blue, through a feature map of `stride` px cells, GAP and a
    linear head.

    Its class activation map for class 0 is each cell's mean red value: it can
    only peak where red was drawn.
    """

    def __init__(self, stride: int = 8) -> None:
        super().__init__()
        self.features = nn.Conv2d(3, 2, stride, stride=stride, bias=False)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Linear(2, 2)
        with torch.no_grad():
            self.features.weight.zero_()
            self.features.weight[0, 0] = 1 / stride**2  # RGB input: channel 0 is red
            self.features.weight[1, 2] = 1 / stride**2
            self.classifier.weight.copy_(torch.eye(2))
            self.classifier.bias.copy_(torch.tensor([0.5, -0.5]))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.pool(self.features(x)).flatten(1))


def drawn(square: tuple[int, int, int, int], colour=RED, size: int = 256) -> np.ndarray:
    """A grey size x size BGR image with a filled square (x0, y0, x1, y1), exclusive, in `colour`."""
    image = np.full((size, size, 3), 60, np.uint8)
    x0, y0, x1, y1 = square
    image[y0:y1, x0:x1] = colour
    return image


def squares_folder(root: Path) -> Path:
    """Five red and five blue squares along a row, one image each, in class folders "red" and "blue"."""
    for name, colour in (("red", RED), ("blue", BLUE)):
        (root / name).mkdir(parents=True)
        for j in range(5):
            cv2.imwrite(str(root / name / f"{j}.png"), drawn((40 + 20 * j, 60, 80 + 20 * j, 100), colour))
    return root


def test_the_peak_is_where_the_object_was_drawn_and_the_map_is_exact():
    teacher = Teacher(ColourCounter(), "colour counter")
    squares = [(150, 30, 190, 70), (60, 180, 100, 220)]
    inputs = to_network_tensor([drawn(s) for s in squares], RAW)
    maps = teacher.maps(inputs, torch.tensor([0, 0]))
    assert maps.shape == (2, 32, 32)
    # Exact: the map's mean plus the bias is the logit, the image's mean red plus 0.5: a 40 x 40 square of red 255
    # on a background of red 60.
    assert (maps.mean((1, 2)) + 0.5).tolist() == pytest.approx([60 + 40 * 40 * (255 - 60) / 256**2 + 0.5] * 2)
    for (x0, y0, x1, y1), cam in zip(squares, maps.numpy()):
        # The whole 256 square, no crop: the peak falls inside the drawn square.
        x, y = peak_in(cam, 256, 0, 0, 256, False)
        assert x0 <= x < x1 and y0 <= y < y1
        # A crop at (top 16, left 32) moves it by the crop's offset; a mirrored crop mirrors it too.
        cx, cy = peak_in(cam, 256, 16, 32, 224, False)
        assert (cx, cy) == (x - 32, y - 16)
        assert peak_in(cam, 256, 16, 32, 224, True) == (224 - cx, cy)


def test_on_a_coarse_map_the_peak_is_the_centroid_around_the_hottest_cell_not_its_centre():
    """A 32 px cell map (a 7 x 7 map on 224, as ResNet-50's and Lite0's): a red square straddling two cells lights
    both equally; the hottest cell's centre is 16 px off the square's centre, their centroid is on it."""
    teacher = Teacher(ColourCounter(stride=32), "coarse colour counter")
    square = (112, 96, 144, 128)  # x over cells 3 and 4 (96-128, 128-160) half each, y exactly cell 3
    cam = teacher.maps(to_network_tensor([drawn(square)], RAW), torch.tensor([0]))[0].numpy()
    assert cam.shape == (8, 8) and cam[3, 3] == pytest.approx(cam[3, 4]) and cam[3, 3] > cam[3, 2]
    assert peak_in(cam, 256, 0, 0, 256, False) == pytest.approx((128.0, 112.0))


def test_the_peak_worked_by_hand_weighs_the_neighbours_above_the_median_and_stays_in_the_crop():
    cam = np.zeros((7, 7), np.float32)  # cells of 32 px on a 224 square, centres at 16, 48, 80, 112, 144, ...
    cam[3, 3], cam[3, 4], cam[2, 3] = 4.0, 2.0, 2.0
    # Median 0: weights 4 at (112, 112), 2 at (144, 112), 2 at (112, 80): x = (4*112 + 2*144 + 2*112) / 8 = 120,
    # y = (4*112 + 2*112 + 2*80) / 8 = 104.
    assert peak_in(cam, 224, 0, 0, 224, False) == pytest.approx((120.0, 104.0))
    # A crop of rows 3-5 and columns 4-6 (from x 128, y 96): its hottest cell is (3, 4), whose neighbourhood holds the
    # same three cells, so the centroid (120, 104) lies left of the crop: clipped to its first pixel's centre, 0.5.
    assert peak_in(cam, 224, 96, 128, 96, False) == pytest.approx((0.5, 8.0))
    assert peak_in(cam, 224, 96, 128, 96, True) == pytest.approx((95.5, 8.0))
    cam[:] = 0.0
    cam[3, 3] = 1.0
    cam[0, 0] = 5.0  # out of a crop that starts at 32: the in-crop peak (3, 3) alone
    assert peak_in(cam, 224, 32, 32, 192, False) == pytest.approx((80.0, 80.0))
    # A flat map: the first cell in the crop, at its centre.
    assert peak_in(np.ones((7, 7), np.float32), 224, 0, 0, 224, True) == pytest.approx((224 - 16.0, 16.0))


def test_under_bfloat16_autocast_the_map_is_float32_peaks_where_drawn_and_a_bent_head_is_still_refused():
    """The folder recipe maps under autocast (3x the images/s where the CPU has BF16): the looser bfloat16 check
    still passes an exact head, the map comes back in float32 at the same peak, and a non-CAM head still fails."""
    teacher = Teacher(ColourCounter(), "colour counter")
    square = (150, 30, 190, 70)
    inputs = to_network_tensor([drawn(square)], RAW)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        cam = teacher.maps(inputs, torch.tensor([0]))
    assert cam.dtype == torch.float32
    x, y = peak_in(cam[0].numpy(), 256, 0, 0, 256, False)
    assert 150 <= x < 190 and 30 <= y < 70
    bent = nn.Sequential(
        nn.Conv2d(3, 4, 3), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4, 4), nn.ReLU(), nn.Linear(4, 2)
    )
    torch.manual_seed(0)
    with pytest.raises(InputError, match="misses its logits"), torch.autocast("cpu", dtype=torch.bfloat16):
        Teacher(bent, "bent").maps(torch.randn(2, 3, 32, 32), torch.tensor([0, 1]))


def test_a_head_that_is_not_global_average_pooling_and_linear_is_refused():
    max_pooled = nn.Sequential(nn.Conv2d(3, 4, 3), nn.AdaptiveMaxPool2d(1), nn.Flatten(), nn.Linear(4, 2))
    with pytest.raises(InputError, match="global average pooling and a linear classifier"):
        Teacher(max_pooled, "max pooled")
    # Average pooling, then a ReLU before the classifier: the pooled map no longer gives the logits.
    bent = nn.Sequential(
        nn.Conv2d(3, 4, 3), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4, 4), nn.ReLU(), nn.Linear(4, 2)
    )
    torch.manual_seed(0)
    with pytest.raises(InputError, match="misses its logits"):
        Teacher(bent, "bent").maps(torch.randn(2, 3, 32, 32), torch.tensor([0, 1]))


def test_the_trained_full_image_lite0_peaks_on_the_digit():
    """The committed full-image EfficientNet-Lite0 (weights/): its CAM for the true digit lies within half a cell
    (16 px) of the digit's box on most test draws (issue #27 measured 96 % of 300)."""
    from export.data.digits import NETWORK_OFFSET, make_sample
    from export.models.downstream import load_downstream
    from export.models.trained_weights import WEIGHTS_DIR

    torch.set_num_threads(1)
    loaded = load_downstream(f"efficientnet_lite0:{WEIGHTS_DIR / 'efficientnet_lite0' / 'downstream_full.pt'}")
    samples = [make_sample("test", i) for i in range(10)]
    inputs = to_network_tensor([s.image for s in samples], (loaded.mean, loaded.std))
    maps = Teacher(loaded.module, loaded.name).maps(inputs, torch.tensor([s.label for s in samples]))
    near = 0
    for sample, cam in zip(samples, maps.numpy()):
        x, y = peak_in(cam, 256, NETWORK_OFFSET, NETWORK_OFFSET, 224, False)  # in network-input pixels, as the box
        x0, y0, x1, y1 = sample.box
        near += x0 - 16 <= x <= x1 + 16 and y0 - 16 <= y <= y1 + 16
    assert near >= 8, f"the peak was near the digit on {near} of 10 draws"


def test_a_taught_folder_sample_carries_the_teachers_peak_on_the_drawn_object(tmp_path):
    """Every training sample's centre, through its random crop and mirroring, lands on its own drawn square."""
    rng = np.random.default_rng(0)
    for name, colour in (("red", RED), ("blue", BLUE)):
        (tmp_path / "data" / name).mkdir(parents=True)
        for j in range(5):
            x, y = (int(v) for v in rng.integers(32, 185, 2))  # inside every 224 crop of the 256 square
            cv2.imwrite(str(tmp_path / "data" / name / f"{j}.png"), drawn((x, y, x + 40, y + 40), colour))
    folder = ImageFolder.open(tmp_path / "data")
    assert folder.class_names == ("blue", "red")
    teacher = Teacher(ColourCounter(), "colour counter")
    # Class 0 of the counter is red and 1 is blue; the folder's are the other way round.
    teacher.module.classifier.weight.data = teacher.module.classifier.weight.data.flip(0)
    taught, report = teach(folder, teacher, RAW, tmp_path / "maps.pt", "colour counter")
    assert report["files"] == 8 and (tmp_path / "maps.pt").is_file()
    for index in range(16):
        sample = taught.sample(TRAIN, index, seed=3)
        x, y = sample.centre
        assert tuple(sample.image[int(y), int(x)]) == (BLUE if sample.label == 0 else RED)
        # The folder's own crop, with distractors kept away from that centre; held-out samples as they are.
        plain = folder.sample(TRAIN, index, seed=3).image
        assert np.array_equal(sample.image, with_distractors(plain, (x, y), 3, index))
    for index in range(folder.count(HELD_OUT)):
        assert np.array_equal(taught.sample(HELD_OUT, index).image, folder.sample(HELD_OUT, index).image)
    again, _ = teach(folder, teacher, RAW, tmp_path / "maps.pt", "colour counter")
    assert np.array_equal(again.maps, taught.maps), "the cache gives the same maps back"


def test_maps_stop_at_their_time_limit_and_a_rerun_goes_on_from_the_kept_ones(tmp_path, monkeypatch):
    from export.training import taught_folder

    folder = ImageFolder.open(squares_folder(tmp_path / "data"))
    teacher = Teacher(ColourCounter(), "colour counter")
    monkeypatch.setattr(taught_folder, "TEACHER_BATCH", 3)
    with pytest.raises(InputError, match=r"maps of 3 of 8 training files took \d+ s, AnchorNet's whole share"):
        teach(folder, teacher, RAW, tmp_path / "maps.pt", "colour counter", limit_seconds=0)
    assert len(torch.load(tmp_path / "maps.pt")["maps"]) == 3, "the maps made before the limit are kept"
    resumed, report = teach(folder, teacher, RAW, tmp_path / "maps.pt", "colour counter")
    whole, _ = teach(folder, teacher, RAW, tmp_path / "fresh.pt", "colour counter")
    assert report["files"] == 8 and np.array_equal(resumed.maps, whole.maps)


def test_a_damaged_map_cache_of_the_same_files_is_refused_with_what_to_do(tmp_path):
    folder = ImageFolder.open(squares_folder(tmp_path / "data"))
    teacher = Teacher(ColourCounter(), "colour counter")
    cache = tmp_path / "maps.pt"
    whole, _ = teach(folder, teacher, RAW, cache, "colour counter")
    kept = torch.load(cache)
    for damage in ({"maps": torch.cat([kept["maps"], kept["maps"]])}, {"maps": kept["maps"][0]}, {"seconds": None}):
        torch.save({**kept, **damage}, cache)
        with pytest.raises(InputError, match=r"maps\.pt holds no teacher maps of these 8 training files .* delete it"):
            teach(folder, teacher, RAW, cache, "colour counter")
    cache.unlink()
    again, _ = teach(folder, teacher, RAW, cache, "colour counter")
    assert np.array_equal(again.maps, whole.maps), "once deleted, the maps are made anew"


def test_centre_only_targets_are_hard_on_every_branch_and_windows_keep_the_centre_in_view():
    targets = branch_targets(torch.tensor([2, 0]), None, 4)
    assert targets.shape == (2, 3, 4)
    assert targets[0].tolist() == [[0, 0, 1, 0]] * 3 and targets[1].tolist() == [[1, 0, 0, 0]] * 3
    image = np.zeros((224, 224, 3), np.uint8)
    for centre in ((10.5, 200.5), (112.0, 112.0), (223.5, 0.5)):
        for seed in range(20):
            window = _window_around(LabelledImage(image, 0, centre=centre), 128, np.random.default_rng(seed))
            x, y = window.centre
            assert window.image.shape == (128, 128, 3) and window.box is None
            # The centre stays CENTRE_MARGIN inside the window wherever the input allows it.
            assert min(CENTRE_MARGIN, centre[0]) - 1 <= x <= 128 - min(CENTRE_MARGIN, 224 - centre[0]) + 1
            assert min(CENTRE_MARGIN, centre[1]) - 1 <= y <= 128 - min(CENTRE_MARGIN, 224 - centre[1]) + 1
