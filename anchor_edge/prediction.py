"""What the pipeline says about one image, and how it got there."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from anchor_edge.method.anchor_vote import class_scores


@dataclass(frozen=True)
class Prediction:
    """The class of one image and the evidence behind it.

    Attributes:
        class_id: argmax of the sum of the patches' softmax distributions; with AnchorNet's vote, of their mean
            plus `anchor_scores` (docs/method.md §5).
        label: the bundle's name for `class_id`.
        score: the winning class's share of those summed scores, in [0, 1].
        branch: receptive field of the branch whose heatmap chose the patches (63, 95 or 111).
        anchor_class: the class AnchorNet decided on (eq. 7), whose heatmap LSP used.
        branch_probs: (3, C) AnchorNet's class probabilities per branch, order B63, B95, B111.
        heatmap: (H, W) the chosen branch's logit map LSP read: for `anchor_class`, or the maximum over classes
            where the bundle's `decision.heatmap` is "max".
        boxes: (n, 4) int patch boxes [x0, y0, x1, y1) in network-input (224 x 224) pixels, LSP order.
        boxes_original: (n, 4) float boxes in the caller's image pixels (preprocessing inverted).
        patch_probs: (n, C) the downstream network's softmax for each patch, in `boxes` order.
        classified_sizes: the size of every patch the downstream network ran for this image, in LSP order: those
            of `boxes`, and with early exit also those of its last round past the patch that made it confident,
            whose softmax is dropped but whose cost is paid (anchor_edge/method/early_exit.py).
        timings: milliseconds per stage for the batch this image was processed in, "total" (their
            sum), and the time inside each model's runs ("model_anchornet", "model_downstream",
            with TensorRT's device times), which lies within the stages (anchor_edge/timing.py).
        attention: (3, h, w) maps S per branch when the bundle exports them, else None.
        anchor_scores: (C,) AnchorNet's vote, added to the mean patch softmax: the bundle's `decision.anchor_vote`
            times the decided branch's class probabilities (anchor_edge/method/anchor_vote.py); None where that
            weight is 0, the paper's rule.
    """

    class_id: int
    label: str
    score: float
    branch: int
    anchor_class: int
    branch_probs: np.ndarray
    heatmap: np.ndarray
    boxes: np.ndarray
    boxes_original: np.ndarray
    patch_probs: np.ndarray
    classified_sizes: tuple[int, ...]
    timings: dict[str, float] = field(default_factory=dict)
    attention: tuple[np.ndarray, ...] | None = None
    anchor_scores: np.ndarray | None = None

    def class_distribution(self) -> np.ndarray:
        """The class scores (the summed patch softmaxes, or their mean plus AnchorNet's vote) normalized to sum to 1
        (float64): the distribution whose argmax is `class_id`."""
        total = class_scores(self.patch_probs.astype(np.float64), self.anchor_scores)
        return total / max(float(total.sum()), 1e-12)

    def to_dict(self, *, top_k: int = 5) -> dict:
        """JSON-ready summary: class, score, branch, boxes, per-patch top class, timings.

        Full arrays (branch probabilities, heatmap, patch distributions) are
        summarised: the `top_k` classes of `class_distribution` and each
        patch's own top class and probability.
        """
        share = self.class_distribution()
        top = np.argsort(-share, kind="stable")[:top_k]
        return {
            "class_id": self.class_id,
            "label": self.label,
            "score": round(self.score, 6),
            "branch": self.branch,
            "anchor_class": self.anchor_class,
            "top_k": [{"class_id": int(c), "score": round(float(share[c]), 6)} for c in top],
            "patches": [
                {
                    "box": [int(v) for v in box],
                    "box_original": [round(float(v), 2) for v in box_original],
                    "class_id": int(probs.argmax()),
                    "prob": round(float(probs.max()), 6),
                }
                for box, box_original, probs in zip(self.boxes, self.boxes_original, self.patch_probs)
            ],
            "branch_confidence": [round(float(p.max()), 6) for p in self.branch_probs],
            "timings_ms": {stage: round(ms, 3) for stage, ms in self.timings.items()},
        }
