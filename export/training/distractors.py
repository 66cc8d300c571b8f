"""Random erasing away from the object: AnchorNet trained on a folder learns that a new background is not a class.

A folder's images come with few backgrounds, and AnchorNet, a small network,
learns them: on the fashion folder (17 training photos, 4 held-out ones) a
30-minute run put its first patch on the product for 98 % of fresh draws
over the training photos but 80 % over the held-out ones, where the hottest
class's heatmap lit up a flat out-of-focus region or a coin instead; where
the patch held the product, the pipeline matched the whole image. So each
training sample of a taught folder gets up to MAX_RECTANGLES rectangles of
flat colour or noise (random erasing, Zhong et al. 2017) that keep out of the
CENTRE_MARGIN square around the teacher's centre: shapes and colours no
class has, which AnchorNet must not light up. Measured on the fashion
folder, the first patch then held the product for 97 % of held-out images
(docs/decisions/027-teacher-peak-and-distractors.md). Held-out samples are
never touched: they are measured, not taught.
"""

from __future__ import annotations

import numpy as np

from export.training.common import CENTRE_MARGIN

#: Up to this many rectangles per sample (0 to MAX_RECTANGLES, uniformly).
MAX_RECTANGLES = 3
#: Each rectangle's area as a share of the image, and its height / width (log-uniform), as random erasing draws them.
AREA_SHARE = (0.02, 0.15)
ASPECT = (0.3, 3.3)
#: Draws per rectangle before giving it up (a draw that overlaps the object's square, or does not fit, is redrawn).
TRIES = 10
#: Seed stream of the rectangles, apart from the sample's own crop and mirroring.
DISTRACTOR_STREAM = 99


def with_distractors(image: np.ndarray, centre: tuple[float, float], seed: int, index: int) -> np.ndarray:
    """A copy of the (H, W, 3) uint8 image with 0-MAX_RECTANGLES rectangles, half of flat colour and half of
    uniform noise, none within CENTRE_MARGIN of `centre` (x, y); a pure function of its arguments."""
    rng = np.random.default_rng([seed, index, DISTRACTOR_STREAM])
    image = image.copy()
    height, width = image.shape[:2]
    centre_x, centre_y = centre
    for _ in range(int(rng.integers(0, MAX_RECTANGLES + 1))):
        for _ in range(TRIES):
            area = rng.uniform(*AREA_SHARE) * height * width
            aspect = np.exp(rng.uniform(np.log(ASPECT[0]), np.log(ASPECT[1])))
            h, w = int(round(np.sqrt(area * aspect))), int(round(np.sqrt(area / aspect)))
            if h >= height or w >= width or h < 4 or w < 4:
                continue
            y, x = int(rng.integers(height - h + 1)), int(rng.integers(width - w + 1))
            if x < centre_x + CENTRE_MARGIN and centre_x - CENTRE_MARGIN < x + w:
                if y < centre_y + CENTRE_MARGIN and centre_y - CENTRE_MARGIN < y + h:
                    continue
            if rng.random() < 0.5:
                image[y : y + h, x : x + w] = rng.integers(0, 256, 3, dtype=np.uint8)
            else:
                image[y : y + h, x : x + w] = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
            break
    return image
