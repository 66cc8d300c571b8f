"""Score a bundle on the user's own labelled images (`anchor-edge eval`): folder reading, scoring, reporting.

Example:
    >>> folder = read_labelled_folder("photos/", pipe.bundle.class_names)
    >>> sorted(summarize(evaluate(pipe, folder))["top1"])
    ['anchornet', 'full_image', 'pipeline']
"""

from anchor_edge.evaluation.folder import LabelledFolder, read_labelled_folder
from anchor_edge.evaluation.score import Evaluation, ImageResult, evaluate
from anchor_edge.evaluation.summary import agreement, summarize

__all__ = [
    "Evaluation",
    "ImageResult",
    "LabelledFolder",
    "agreement",
    "evaluate",
    "read_labelled_folder",
    "summarize",
]
