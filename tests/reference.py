"""The whole method in plain PyTorch and Python loops, written from docs/method.md alone
(the project's reading of the paper).

It shares nothing with the runtime except image decoding and cropping, so a
test comparing the two checks the runtime's decision, LSP, patch cutting,
batching and aggregation against an independent reading of docs/method.md.
"""

from __future__ import annotations

import torch


def anchornet_outputs(anchornet: torch.nn.Module, crop_rgb, norm) -> tuple[list[list[float]], list]:
    """AnchorNet's (3, C) probabilities and its three (C, H, W) logit maps for one uint8 RGB crop."""
    with torch.no_grad():
        probs, *maps = anchornet(_normalized(crop_rgb, norm)[None])
    return probs[0].tolist(), [m[0].numpy() for m in maps[:3]]


def decide(probs: list[list[float]], vote_min: int) -> tuple[int, int]:
    """docs/method.md §3 for vote_min 2 or 3 (where at most one class can reach the vote)."""
    assert vote_min in (2, 3)
    return _decide(probs, vote_min)


def lsp(heatmap, k: int, max_patches: int, iou_threshold: float, coverage: float) -> list[tuple[int, int, int, int]]:
    """docs/method.md §4, Algorithm 1 as written, on a nested-list or array heatmap."""
    return _lsp([list(map(float, row)) for row in heatmap], k, max_patches, iou_threshold, coverage)


def ordering_margin(heatmap, coverage: float) -> float:
    """Smallest gap between consecutive values among the locations LSP may visit.

    Two implementations computing the heatmap in float32 may order locations
    closer than this differently; boxes can only be compared exactly above it.
    """
    values = sorted((float(v) for v in heatmap.ravel()), reverse=True)
    visited = values[: max(1, int(len(values) * coverage + 1e-9)) + 1]
    return min((a - b for a, b in zip(visited, visited[1:])), default=float("inf"))


def classify_patches(downstream: torch.nn.Module, crop_rgb, boxes, norm):
    """(n, C) softmax of the downstream network on each box, cut at native size from the normalized crop."""
    image = _normalized(crop_rgb, norm)
    patches = torch.stack([image[:, y0:y1, x0:x1] for x0, y0, x1, y1 in boxes])
    with torch.no_grad():
        return torch.softmax(downstream(patches), dim=1).numpy()


def _normalized(crop_rgb, norm) -> torch.Tensor:
    mean, std = (torch.tensor(v, dtype=torch.float32).view(3, 1, 1) for v in norm)
    return (torch.from_numpy(crop_rgb).permute(2, 0, 1).float() - mean) / std


def _decide(probs: list[list[float]], vote_min: int) -> tuple[int, int]:
    tops = [max(range(len(row)), key=lambda c: (row[c], -c)) for row in probs]
    confidences = [row[c] for row, c in zip(probs, tops)]
    for candidate in sorted(set(tops)):
        if tops.count(candidate) >= vote_min:
            class_id = candidate
            break
    else:
        class_id = tops[max(range(3), key=lambda j: (confidences[j], -j))]
    eligible = [j for j in range(3) if confidences[j] == probs[j][class_id]]
    return class_id, max(eligible, key=lambda j: (confidences[j], -j))


def _lsp(heatmap: list[list[float]], k: int, max_patches: int, iou_threshold: float, coverage: float):
    height, width = len(heatmap), len(heatmap[0])
    cells = [(heatmap[r][c], r, c) for r in range(height) for c in range(width)]
    order = sorted(range(len(cells)), key=lambda i: -cells[i][0])  # sorted() is stable
    boxes = []
    for i in order[: max(1, int(height * width * coverage + 1e-9))]:
        _, r, c = cells[i]
        box = (8 * c, 8 * r, 8 * c + k, 8 * r + k)
        if not boxes or all(_iou(box, kept) < iou_threshold for kept in boxes):
            boxes.append(box)
        if len(boxes) == max_patches:
            break
    return boxes


def _iou(a, b) -> float:
    w = max(0, min(a[2], b[2]) - max(a[0], b[0]))
    h = max(0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = w * h
    return inter / ((a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter)
