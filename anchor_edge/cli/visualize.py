"""Pictures of what the model saw: patches, heatmap and attention maps, drawn with OpenCV only.

One picture per prediction, laid out as:

- top left, the caller's image (shrunk to at most MAX_SIDE pixels a side),
  with the chosen branch's heatmap blended over the part of the network
  input it covers, and every patch's box at `boxes_original`, labelled with
  its rank in LSP order (rank 1 is the most activated location);
- top right, a legend: the prediction, then one row per patch with its
  class, its probability for that class and its contribution to the final
  score, and AnchorNet's where the bundle gives it a vote (the score is the
  sum of the contributions);
- below, when the bundle exports them, the three branches' spatial
  attention maps S side by side, B63, B95, B111 (the paper's Figure 5).

OpenCV is already a run-time dependency, so a deployment can write these
without matplotlib.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import cv2
import numpy as np

from anchor_edge.errors import InputError
from anchor_edge.method.anchor_vote import class_scores
from anchor_edge.method.preprocess import ImageLike, load_image
from anchor_edge.prediction import Prediction

#: Box colour (BGR magenta). The JET colour map of the heatmap never produces it, so boxes stay visible.
BOX_COLOUR = (255, 0, 255)
BOX_THICKNESS = 2
#: Longest side of the image panel; larger images are shrunk by `panel_scale`.
MAX_SIDE = 1024
#: Distance between neighbouring heatmap locations in network-input pixels (docs/method.md §2).
STRIDE = 8
HEATMAP_ALPHA = 0.45
LEGEND_WIDTH = 330
ATTENTION_SIDE = 160
LEGEND_ROWS = 14
_FONT = cv2.FONT_HERSHEY_SIMPLEX
_TEXT = (20, 20, 20)
_LINE = 18
_COLUMNS = (8, 34, 214, 264)  # legend table: rank, class, p, +score


def panel_scale(height: int, width: int) -> float:
    """Scale of the image panel: 1 unless the image's longer side exceeds MAX_SIDE."""
    return min(1.0, MAX_SIDE / max(height, width))


def render(image: ImageLike, prediction: Prediction, class_names: Sequence[str] | None = None) -> np.ndarray:
    """Draw `prediction` on the image it was made from: an H x W x 3 uint8 BGR picture.

    Args:
        image: the image given to the pipeline (array, path or bytes), not the 224 crop.
        prediction: the pipeline's Prediction for that image.
        class_names: the bundle's class names for the legend (`pipe.bundle.class_names`);
            class ids are shown without them.

    Example:
        >>> picture = render("photo.jpg", pipe("photo.jpg"), pipe.bundle.class_names)
        >>> cv2.imwrite("photo_vis.png", picture)
    """
    original = load_image(image)
    if len(prediction.boxes) == 0:
        raise InputError("the prediction has no patches to draw")
    scale = panel_scale(*original.shape[:2])
    if scale < 1:
        panel = cv2.resize(original, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA)
    else:
        panel = original.copy()
    _blend_heatmap(panel, prediction, scale)
    _draw_boxes(panel, prediction.boxes_original * scale)
    legend = _legend(prediction, class_names)
    height = max(panel.shape[0], legend.shape[0])
    top = np.full((height, panel.shape[1] + legend.shape[1], 3), 255, np.uint8)
    top[: panel.shape[0], : panel.shape[1]] = panel
    top[: legend.shape[0], panel.shape[1] :] = legend
    if not prediction.attention:
        return top
    row = _attention_row(prediction.attention, top.shape[1])
    return np.vstack([top, row])


def annotate(
    frame: np.ndarray, prediction: Prediction, label: str | None = None, fps: float | None = None
) -> np.ndarray:
    """A copy of a video frame, same size, with the heatmap, numbered boxes, label, score and frames/s drawn on it.

    For video out (`anchor-edge predict clip.mp4 --save-vis out.mp4`), where
    every frame must keep the input's size; `render` is the still picture with
    a legend. `label` defaults to the prediction's (pass a smoothed one to show it).
    """
    picture = np.ascontiguousarray(frame).copy()
    if len(prediction.boxes):
        _blend_heatmap(picture, prediction, 1.0)
        _draw_boxes(picture, prediction.boxes_original)
    text = f"{label or prediction.label} {prediction.score:.2f}  B{prediction.branch}"
    if fps is not None:
        text += f"  {fps:.1f} frames/s"
    (width, height), _ = cv2.getTextSize(text, _FONT, 0.6, 1)
    cv2.rectangle(picture, (0, 0), (width + 10, height + 12), (255, 255, 255), cv2.FILLED)
    cv2.putText(picture, text, (5, height + 5), _FONT, 0.6, _TEXT, 1, cv2.LINE_AA)
    return picture


def save(path: str | Path, image: ImageLike, prediction: Prediction, class_names: Sequence[str] | None = None) -> Path:
    """Render and write a PNG to `path` (parent folders are created); returns the path."""
    return write_png(path, render(image, prediction, class_names))


def write_png(path: str | Path, picture: np.ndarray) -> Path:
    """Write a BGR picture as PNG (parent folders are created); returns the path."""
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    if not cv2.imwrite(str(out), picture, [cv2.IMWRITE_PNG_COMPRESSION, 9]):
        raise OSError(f"OpenCV could not write {out}; use a .png path in a writable folder")
    return out


def contributions(prediction: Prediction) -> tuple[np.ndarray, float]:
    """Each patch's share of the final score, and AnchorNet's vote's (0 without one): together `prediction.score`.

    The score is the predicted class's share of the class scores: the summed
    patch softmaxes, or their mean plus AnchorNet's vote
    (anchor_edge/method/anchor_vote.py).
    """
    probs, vote, c = prediction.patch_probs.astype(np.float64), prediction.anchor_scores, prediction.class_id
    total = max(float(class_scores(probs, vote).sum()), 1e-12)
    if vote is None:
        return probs[:, c] / total, 0.0
    return probs[:, c] / len(probs) / total, float(vote[c]) / total


def _blend_heatmap(panel: np.ndarray, prediction: Prediction, scale: float) -> None:
    """Colour the network-input area the heatmap covers: one STRIDE cell per location, centred on its box."""
    k = prediction.branch
    crop_box, original_box = prediction.boxes[0].astype(np.float64), prediction.boxes_original[0]
    # boxes_original is boxes under one scale and offset (preprocess.CropTransform); recover them.
    to_original = (original_box[2] - original_box[0]) / (crop_box[2] - crop_box[0])
    offset = original_box[:2] - crop_box[:2] * to_original
    rows, cols = prediction.heatmap.shape
    start = k / 2 - STRIDE / 2
    x0, y0 = (offset + start * to_original) * scale
    x1, y1 = (offset + (start + STRIDE * np.array([cols, rows])) * to_original) * scale
    left, top = max(int(round(x0)), 0), max(int(round(y0)), 0)
    right, bottom = min(int(round(x1)), panel.shape[1]), min(int(round(y1)), panel.shape[0])
    if right <= left or bottom <= top:
        return
    size = (int(round(x1 - x0)), int(round(y1 - y0)))
    full = cv2.resize(_colour_map(prediction.heatmap), size, interpolation=cv2.INTER_LINEAR)
    dx, dy = left - int(round(x0)), top - int(round(y0))
    colour = full[dy : dy + bottom - top, dx : dx + right - left]
    area = panel[top : top + colour.shape[0], left : left + colour.shape[1]]
    cv2.addWeighted(colour, HEATMAP_ALPHA, area, 1 - HEATMAP_ALPHA, 0, dst=area)


def _draw_boxes(panel: np.ndarray, boxes: np.ndarray) -> None:
    """Boxes [x0, y0, x1, y1) with rank labels; drawn last-rank first so rank 1 ends on top."""
    for rank in range(len(boxes), 0, -1):
        x0, y0, x1, y1 = (int(round(v)) for v in boxes[rank - 1])
        cv2.rectangle(panel, (x0, y0), (x1 - 1, y1 - 1), BOX_COLOUR, BOX_THICKNESS)
        text = str(rank)
        (width, height), _ = cv2.getTextSize(text, _FONT, 0.4, 1)
        cv2.rectangle(panel, (x0, y0), (x0 + width + 3, y0 + height + 4), BOX_COLOUR, cv2.FILLED)
        cv2.putText(panel, text, (x0 + 2, y0 + height + 2), _FONT, 0.4, (255, 255, 255), 1, cv2.LINE_AA)


def _legend(prediction: Prediction, class_names: Sequence[str] | None) -> np.ndarray:
    """The prediction in three lines, then a table: rank, the patch's top class, its probability, its contribution."""

    def name(class_id: int) -> str:
        return class_names[class_id][:20] if class_names else f"class {class_id}"

    rows: list[tuple[str, ...]] = [
        (f"{prediction.label[:28]} (class {prediction.class_id})",),
        (f"score {prediction.score:.3f}   branch B{prediction.branch}",),
        (f"AnchorNet class {prediction.anchor_class}, {len(prediction.boxes)} patches",),
        (),
        ("#", "patch's class", "p", "+score"),
    ]
    shares, vote_share = contributions(prediction)
    for rank, (probs, share) in enumerate(zip(prediction.patch_probs, shares), start=1):
        if rank > LEGEND_ROWS:
            rows.append((f"... {len(shares) - LEGEND_ROWS} more patches, +{shares[LEGEND_ROWS:].sum():.3f}",))
            break
        top_class = int(probs.argmax())
        rows.append((str(rank), name(top_class), f"{probs[top_class]:.2f}", f"+{share:.3f}"))
    if prediction.anchor_scores is not None:
        rows.append((f"AnchorNet's vote (B{prediction.branch}) +{vote_share:.3f}",))
    legend = np.full((_LINE * (len(rows) + 1), LEGEND_WIDTH, 3), 255, np.uint8)
    for index, row in enumerate(rows, start=1):
        for x, cell in zip(_COLUMNS if len(row) > 1 else (8,), row):
            cv2.putText(legend, cell, (x, index * _LINE), _FONT, 0.42, _TEXT, 1, cv2.LINE_AA)
    return legend


def _attention_row(maps: Sequence[np.ndarray], width: int) -> np.ndarray:
    side = min(ATTENTION_SIDE, width // len(maps))
    row = np.full((side + 2 * _LINE, width, 3), 255, np.uint8)
    for index, (attention, k) in enumerate(zip(maps, (63, 95, 111))):
        x = index * side
        tile = cv2.resize(_colour_map(attention), (side, side), interpolation=cv2.INTER_NEAREST)
        row[_LINE : _LINE + side, x : x + side] = tile
        cv2.putText(row, f"attention B{k}", (x + 4, _LINE - 5), _FONT, 0.42, _TEXT, 1, cv2.LINE_AA)
    return row


def _colour_map(values: np.ndarray) -> np.ndarray:
    """Min-max scale a 2-D map to 0..255 and colour it with JET (blue low, red high)."""
    low, high = float(values.min()), float(values.max())
    scaled = (values - low) / (high - low) if high > low else np.zeros_like(values)
    return cv2.applyColorMap(np.round(scaled * 255).astype(np.uint8), cv2.COLORMAP_JET)
