"""What every training recipe shares: batches of generated samples, the schedule, the budget, resumable checkpoints.

The recipes must finish within a wall-clock budget on 2 CPU cores,
survive being stopped, and give the same weights for the same seed when the
budget does not cut them short. So the data is indexed (batch b of a run is
always the same samples, `export.data.digits`), the learning rate follows the
planned step count, and a checkpoint holds everything needed to continue.
"""

from __future__ import annotations

import argparse
import io
import logging
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import torch

from anchor_edge.bundle.atomic_write import write_atomically
from anchor_edge.errors import AnchorEdgeError, InputError
from export.data.source import DIGITS, DataSource, LabelledImage
from export.models.downstream import IMAGENET_MEAN, IMAGENET_STD

LOG = logging.getLogger(__name__)


def take_step(optimizer: torch.optim.Optimizer, loss: torch.Tensor, progress: Any) -> None:
    """One optimizer step on `loss`, shown on the tqdm progress bar."""
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    optimizer.step()
    progress.update()
    progress.set_postfix(loss=f"{loss.item():.3f}")


def training_state(
    model: torch.nn.Module, optimizer: torch.optim.Optimizer, step: int, budget: "Budget", run: dict[str, Any]
) -> dict:
    """What a resumable checkpoint holds: weights, optimizer state, torch's random state (dropout masks continue
    where they were), steps taken, seconds spent, and which run it belongs to (`run_identity`)."""
    return {
        "model": model.state_dict(),
        "optimizer": optimizer.state_dict(),
        "rng": torch.get_rng_state(),
        "step": step,
        "spent": budget.spent,
        "run": run,
    }


def resume_from(
    state: dict[str, Any], model: torch.nn.Module, optimizer: torch.optim.Optimizer, budget_minutes: float | None
) -> tuple[int, "Budget"]:
    """Put a checkpoint's weights, optimizer and random state back; returns its step and the budget left to it."""
    model.load_state_dict(state["model"])
    optimizer.load_state_dict(state["optimizer"])
    if "rng" in state:  # checkpoints before it was saved resume with the seed's random state
        torch.set_rng_state(state["rng"])
    return state["step"], Budget(budget_minutes, state["spent"])


def no_step_taken(what: str, budget_minutes: float | None) -> InputError:
    """The error for a step whose budget ran out before its first batch: weights that never trained are not written
    as trained ones."""
    return InputError(
        f"{what}: no training step fit in its {budget_minutes or 0:g} minutes of the budget; give more minutes "
        "(--budget-minutes)"
    )


def run_identity(step: str, source: DataSource, **settings: Any) -> dict[str, Any]:
    """What makes two runs of a training step the same run, so one may resume the other's checkpoint: the step,
    the data (its name and classes) and the settings that shape the samples and the recipe. The planned images
    and the budget are not part of it: a rerun may plan a longer run and continue."""
    return {
        "step": step,
        "data": source.name,
        "classes": list(source.class_names),
        **{key: str(value) if isinstance(value, Path) else value for key, value in settings.items()},
    }


def resume_state(path: Path, run: dict[str, Any]) -> dict[str, Any] | None:
    """The training state saved at `path` when it is this run's, None when there is none yet.

    Raises:
        InputError: the checkpoint belongs to another run (other data, classes, seed or schedule): resuming it
            would silently continue that run, or spend its budget.
    """
    state = load_checkpoint(path)
    if state is None:
        return None
    saved = state.get("run")
    if saved is None:  # written before checkpoints named their run: nothing to compare
        LOG.warning("%s does not say which run wrote it; resuming it as this run's", path)
    elif saved != run:
        differences = ", ".join(
            f"{key} {saved.get(key)!r} there, {run.get(key)!r} here"
            for key in sorted(set(saved) | set(run))
            if saved.get(key) != run.get(key)
        )
        raise InputError(
            f"{path} holds the checkpoint of another run ({differences}); give this run a fresh --work-dir "
            "(or, on a folder, a fresh --out), or delete that file to start over"
        )
    return state


def pick_device() -> torch.device:
    """CUDA when there is one (the recipes also run on a GPU), else the CPU."""
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def bf16_supported(device: torch.device) -> bool:
    """Whether this device computes bfloat16 natively: AVX-512 BF16 or AMX on a CPU, Ampere or later on a GPU.

    Detected, never assumed: the project's CPUs change from one machine to the next.
    """
    if device.type == "cuda":
        return torch.cuda.is_bf16_supported()
    return bool(torch.backends.mkldnn.is_available() and torch.ops.mkldnn._is_mkldnn_bf16_supported())


def autocast(device: torch.device) -> torch.autocast:
    """bfloat16 mixed precision where the device has it natively (3x the steps/s of float32 for a ResNet-50 on
    a Zen 5 CPU), else plain float32: the weights and the optimizer stay float32 either way."""
    return torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16_supported(device))


Normalization = tuple[tuple[float, float, float], tuple[float, float, float]]
#: AnchorNet's (mean, std) per RGB channel, pixels 0-255; the downstream network has its own.
IMAGENET: Normalization = (IMAGENET_MEAN, IMAGENET_STD)


def to_network_tensor(
    images_bgr: list[np.ndarray] | np.ndarray, normalization: Normalization = IMAGENET
) -> torch.Tensor:
    """BGR uint8 images (N, H, W, 3) -> float (N, 3, H, W), RGB, (pixel - mean) / std: what the runtime feeds."""
    mean, std = normalization
    batch = np.ascontiguousarray(np.stack(images_bgr)[..., ::-1], dtype=np.float32)
    batch = (batch - np.float32(mean)) / np.float32(std)
    return torch.from_numpy(batch.transpose(0, 3, 1, 2).copy())


def renormalize(images: torch.Tensor, source: Normalization, target: Normalization) -> torch.Tensor:
    """Inputs normalized for one network -> the same pixels normalized for another."""
    (source_mean, source_std), (target_mean, target_std) = source, target

    def column(values: tuple[float, float, float]) -> torch.Tensor:
        return torch.tensor(values, dtype=images.dtype).view(1, 3, 1, 1)

    return (images * column(source_std) + column(source_mean) - column(target_mean)) / column(target_std)


def storage_copy(state_dict: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Floating-point tensors in float16, on the CPU, for weights/: half the bytes in git (a ResNet-50 is 51 MB so).

    Loading casts them back to the network's float32 (`load_state_dict` copies
    with conversion); the FP16 precision check measured 99 % top-1 agreement
    for a whole FP16 bundle, so rounding the stored weights costs nothing visible.
    """
    return {
        key: value.detach().cpu().half() if value.is_floating_point() else value.detach().cpu()
        for key, value in state_dict.items()
    }


class Batch(NamedTuple):
    """Network inputs (N, 3, S, S), labels (N,), the samples (`LabelledImage`, boxes in input coordinates
    when known)."""

    images: torch.Tensor
    labels: torch.Tensor
    samples: list[LabelledImage]

    def boxes(self) -> torch.Tensor:
        """(N, 4) float boxes (x0, y0, x1, y1) of the inputs' objects; the source must have boxes or centres.

        Where only the centre is known the box is (x, y, x, y): the box terms
        read boxes only through their centres (`export.training.box_supervision`).
        """
        return torch.tensor(
            [sample.box or (*sample.centre, *sample.centre) for sample in self.samples], dtype=torch.float32
        )

    def scales(self) -> torch.Tensor:
        """(N,) natural branch of each object; the source must have boxes."""
        return torch.tensor([sample.scale for sample in self.samples])


def sample_batch(
    split: str,
    indices: range | list[int],
    seed: int,
    window: int = 224,
    normalization: Normalization = IMAGENET,
    easy_share: float = 0.0,
    source: DataSource = DIGITS,
) -> Batch:
    """Network inputs, labels and the samples themselves for the given sample indices of `source`.

    window < 224 cuts from each 224 network input a window x window square
    that holds the whole object, or CENTRE_MARGIN around its centre where
    only that is known (seeded per sample; the source must have boxes or
    centres): the fully convolutional AnchorNet then trains window^2 / 224^2 of
    the cost per image, which on a shared 2-core CPU is the difference
    between seeing the data and not. easy_share: the chance that a sample is
    the curriculum's easy variant (`is_easy`); training split only.
    """
    samples = [source.sample(split, index, seed, easy=is_easy(index, seed, easy_share)) for index in indices]
    if window < 224:
        samples = [
            _window_around(sample, window, np.random.default_rng([seed, index, window]))
            for sample, index in zip(samples, indices)
        ]
    images = to_network_tensor([sample.image for sample in samples], normalization)
    labels = torch.tensor([sample.label for sample in samples])
    return Batch(images, labels, samples)


#: Seed stream of the curriculum's easy-or-not draw, apart from the samples' own.
CURRICULUM_STREAM = 7


def is_easy(index: int, seed: int, easy_share: float) -> bool:
    """Whether training sample `index` is drawn easy, at this point of the curriculum:
    a pure function of its arguments."""
    return easy_share > 0 and bool(np.random.default_rng([seed, index, CURRICULUM_STREAM]).random() < easy_share)


def easy_share(progress: float) -> float:
    """The contrast curriculum: all samples easy for the first 5 % of training, tapering linearly to none at 15 %.

    docs/method.md §1: with the benchmark's random contrast from the start,
    weakly supervised training sat at chance for hundreds of steps; easy
    samples first lift it at once, and the rest of training is on the real
    distribution.
    """
    return float(np.clip((0.15 - progress) / 0.10, 0.0, 1.0))


#: Where only the object's centre is known, a training window holds this many pixels on each side of it (clipped
#: to the input): half the smallest patch, so the window shows at least what B63's patch there would.
CENTRE_MARGIN = 32


def _window_around(sample: LabelledImage, window: int, rng: np.random.Generator) -> LabelledImage:
    """A random window x window square of the sample's 224 input that contains its box (or the CENTRE_MARGIN square
    around its centre), the box and centre moved with it."""
    image = sample.image
    if sample.box is not None:
        x0, y0, x1, y1 = sample.box
    elif sample.centre is not None:
        (x, y), (height, width) = sample.centre, image.shape[:2]
        x0, y0 = max(0, int(x) - CENTRE_MARGIN), max(0, int(y) - CENTRE_MARGIN)
        x1, y1 = min(width, int(x) + CENTRE_MARGIN), min(height, int(y) + CENTRE_MARGIN)
    else:
        raise InputError(
            f"a {window} px training window needs the object's box or centre; this source has neither (train at 224)"
        )
    if x1 - x0 > window or y1 - y0 > window:
        raise InputError(f"a {window} px window cannot hold a {x1 - x0} x {y1 - y0} box")
    left = int(rng.integers(max(0, x1 - window), min(x0, image.shape[1] - window) + 1))
    top = int(rng.integers(max(0, y1 - window), min(y0, image.shape[0] - window) + 1))
    crop = image[top : top + window, left : left + window]
    box = None if sample.box is None else (x0 - left, y0 - top, x1 - left, y1 - top)
    centre = None if sample.centre is None else (sample.centre[0] - left, sample.centre[1] - top)
    return sample._replace(image=crop, box=box, centre=centre)


def learning_rate(step: int, progress: float, peak: float, warmup: int) -> float:
    """Linear warmup over `warmup` steps, then cosine decay to 2 % of the peak as progress goes 0 -> 1.

    The recipes pass progress = max(steps done / steps planned, budget used),
    so a run the budget cuts short still ends with a decayed learning rate.
    """
    if step < warmup:
        return float(peak * (step + 1) / warmup)
    progress = min(1.0, max(0.0, progress))
    return float(
        peak * (0.02 + 0.98 * 0.5 * (1 + np.cos(np.pi * progress)))
    )  # a float: checkpoints load with weights_only


def steps_that_run(plan: Sequence[tuple[str, float, int]], only: Sequence[str] | None) -> list[tuple[str, float, int]]:
    """The plan's (step, share, images) in `only` (all of them without it), the shares renormalized over those
    steps: the budget given is the budget used, so `--only anchornet --budget-minutes 60` gives AnchorNet the hour."""
    running = [step for step in plan if not only or step[0] in only]
    total = sum(share for _, share, _ in running)
    return [(name, share / total, images) for name, share, images in running]


class Budget:
    """A wall-clock allowance that survives resuming: time spent before is carried in the checkpoint."""

    def __init__(self, minutes: float | None, spent_seconds: float = 0.0) -> None:
        self.limit = None if minutes is None else minutes * 60.0
        self.spent_before = spent_seconds
        self.start = time.monotonic()

    @property
    def spent(self) -> float:
        return self.spent_before + time.monotonic() - self.start

    def fraction(self) -> float:
        """Share of the allowance used, 0 without a limit."""
        return 0.0 if self.limit is None else self.spent / self.limit

    def exhausted(self) -> bool:
        return self.limit is not None and self.spent >= self.limit


def save_checkpoint(path: Path, state: dict[str, Any]) -> None:
    """Write atomically and synced (`write_atomically`), so neither a stop nor a power cut leaves a torn checkpoint."""
    buffer = io.BytesIO()
    torch.save(state, buffer)
    write_atomically(path, buffer.getbuffer())


def load_checkpoint(path: Path) -> dict[str, Any] | None:
    """The training state saved at `path`, or None when there is none yet.

    Raises:
        InputError: the file is not a checkpoint torch can read (damaged, or another kind of file).
    """
    if not path.is_file():
        return None
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # torch raises RuntimeError, EOFError, pickle errors... for a damaged file
        raise InputError(
            f"{path} is not a readable checkpoint ({type(error).__name__}: {error}); delete it to run that step "
            "from its start"
        ) from error


def seed_everything(seed: int) -> None:
    torch.manual_seed(seed)
    np.random.seed(seed)


def exit_code_of(train: Callable[[], object]) -> int:
    """Run a training command's work for its command line: 0 when it ends, 1 with one line on stderr for the
    project's errors and the file system's (bad data, a damaged checkpoint, an unwritable --out)."""
    try:
        train()
    except (AnchorEdgeError, OSError) as error:
        print(f"training failed: {error}", file=sys.stderr)
        return 1
    return 0


def default_work_dir() -> Path:
    """Where the digits recipe's checkpoints go without --work-dir: one place outside the repository, so a rerun of
    the same command resumes."""
    return Path.home() / ".cache" / "anchor-edge" / "training"


def add_recipe_arguments(
    parser: argparse.ArgumentParser,
    out_default: Path | None = Path("weights"),
    out_help: str = "weights",
    work_dir_help: str | None = None,
) -> None:
    """The flags every training entry point shares: where weights and checkpoints go, seed, threads. With
    `work_dir_help`, --work-dir defaults to None and the entry point picks the place (export/train.py)."""
    parser.add_argument("--out", type=Path, default=out_default, help=f"where the weights go (default: {out_help})")
    parser.add_argument(
        "--work-dir",
        type=Path,
        default=None if work_dir_help else default_work_dir(),
        help=f"checkpoints to resume from (default: {work_dir_help or default_work_dir()})",
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's)")


def apply_recipe_arguments(args: argparse.Namespace) -> None:
    """Log progress lines with timestamps and set torch's CPU threads, as the shared flags say."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    if args.threads:
        torch.set_num_threads(args.threads)
