"""Every step on a user's folder, for their own downstream network, within one budget: who teaches AnchorNet, and when.

A folder has image-level labels and no boxes; the user's downstream network,
trained, knows where their classes are. So (issue #27,
docs/decisions/018-teacher-cam-supervision.md):

1. "full", only when the downstream comes untrained: it learns the folder's
   whole images first, to become the teacher;
2. "anchornet": the teacher maps every training file once (its class
   activation map for the file's label, `export.training.teacher`), and
   AnchorNet trains on the labels plus the map's peak as the object's centre:
   training windows and the box terms around it, every branch on hard labels
   (`export.training.taught_folder`);
3. "patches": the downstream fine-tuned on the patches AnchorNet localizes
   (paper section 4.3), from the user's weights or from "full"; skipped with
   `keep`, which leaves the user's trained network bit-identical in the bundle.

Each step gets its share of the budget (shares of the steps that run, so
`keep` gives the patches' share to AnchorNet); the teacher's maps are paid
from AnchorNet's share. Every step checkpoints into the work dir and resumes.
"""

from __future__ import annotations

from pathlib import Path

from anchor_edge.bundle import sha256_of
from anchor_edge.errors import InputError
from export.data.folder import ImageFolder
from export.data.source import TRAIN
from export.models.downstream import split_checkpoint
from export.models.trained_weights import downstream_weights
from export.training.anchornet import train_anchornet
from export.training.common import steps_that_run
from export.training.downstream import train_downstream
from export.training.taught_folder import maps_out_of_time, teach
from export.training.teacher import Teacher
from export.training.user_downstream import UserDownstream, normalization_of

#: (step, share of the budget, epochs of the folder planned, images planned at least) for an untrained and for a
#: trained downstream. The plans are longer than 2 CPU cores get through in their shares, so the budget the user gives
#: is the budget used: it ends each step, its learning rate decayed by the time spent
#: (export.training.common.learning_rate). The floors (AnchorNet's is the digits recipe's 200k images) keep a small
#: folder from a schedule of a few hundred steps; on a GPU, or with a small folder, the epochs end a step early.
UNTRAINED_PLAN = (("full", 0.25, 30, 8_000), ("anchornet", 0.6, 40, 200_000), ("patches", 0.15, 10, 4_000))
TRAINED_PLAN = (("anchornet", 0.85, 40, 200_000), ("patches", 0.15, 10, 4_000))
TEACHER_MAPS_FILE = "teacher_maps.pt"
#: AnchorNet's share of training on 128 px windows around the teacher's centre; the rest trains on the full 224 px
#: input. Lower than the digits recipe's 0.9: on the digits folder at the default budget, 0.6 raised AnchorNet's
#: decided class on all three test sets (docs/decisions/031-a-folder-anchornet-trains-longer-on-whole-inputs.md).
ANCHORNET_WINDOW_SHARE = 0.6
#: The steps a folder's run may have, in order ("full" only for an untrained downstream).
FOLDER_STEPS = tuple(step for step, *_ in UNTRAINED_PLAN)


def keep_needs_weights(spec: str) -> str:
    """The refusal of --keep-downstream for a downstream spec that names no trained weights."""
    return (
        f"--keep-downstream keeps a trained downstream as it is, and {spec} names no checkpoint; give its weights "
        "(NAME:CKPT), or drop --keep-downstream to train it on the folder"
    )


def folder_plan(user: UserDownstream, keep: bool, files: int) -> list[tuple[str, float, int]]:
    """The steps for this downstream, each with its share of the whole budget (shares of the steps that run) and the
    images planned for a folder of `files` training files."""
    if keep and not user.trained:
        raise InputError(keep_needs_weights(user.spec))
    plan = [step for step in (TRAINED_PLAN if user.trained else UNTRAINED_PLAN) if not (keep and step[0] == "patches")]
    total = sum(step[1] for step in plan)
    return [(step, share / total, max(floor, epochs * files)) for step, share, epochs, floor in plan]


def train_on_folder(
    folder: ImageFolder,
    user: UserDownstream,
    *,
    out: Path,
    work_dir: Path,
    budget_minutes: float,
    scale: float = 1.0,
    seed: int = 0,
    only: tuple[str, ...] | None = None,
    keep: bool = False,
) -> tuple[dict, str]:
    """Run the plan's steps (those in `only`, when given); returns the reports and the bundle's downstream spec."""
    reports = {}
    plan = folder_plan(user, keep, folder.count(TRAIN))
    if only and (not_planned := [step for step in only if step not in [name for name, _, _ in plan]]):
        raise InputError(
            f"--only {','.join(not_planned)}: not a step of this run, whose steps are "
            f"{', '.join(name for name, _, _ in plan)} ({'a trained' if user.trained else 'an untrained'} "
            f"downstream{', kept as it is' if keep else ''})"
        )
    for step, share, images in steps_that_run(plan, only):
        minutes, planned = budget_minutes * share, max(1, int(images * scale))
        if step == "anchornet":
            reports[step] = _taught_anchornet(folder, user, out, work_dir, minutes, planned, seed)
        else:
            reports[step] = train_downstream(
                step,
                out,
                images=planned,
                budget_minutes=minutes,
                seed=seed,
                work_dir=work_dir,
                source=folder,
                user=user,
            )
    bundled = user.spec if keep else user.with_weights(downstream_weights(out, user.folder, "patches"))
    return reports, bundled


def _taught_anchornet(
    folder: ImageFolder, user: UserDownstream, out: Path, work_dir: Path, minutes: float, images: int, seed: int
) -> dict:
    """AnchorNet on the folder taught by the downstream: the user's trained one, else the "full" step's."""
    teacher_spec = user.spec
    if not user.trained:
        full = downstream_weights(out, user.folder, "full")
        if not full.is_file():
            raise InputError(
                f"the anchornet step is taught by the full step's weights, {full}, which no run has written: train "
                "the full step first (--only full, or the whole plan)"
            )
        teacher_spec = user.with_weights(full)
    loaded = user.load(folder.class_names, teacher_spec)
    teacher = Teacher(loaded.module, teacher_spec)
    cache = work_dir / TEACHER_MAPS_FILE
    taught, taught_report = teach(
        folder, teacher, normalization_of(loaded), cache, _weights_id(teacher_spec), limit_seconds=minutes * 60
    )
    left = minutes - taught_report["seconds"] / 60
    if left <= 0:  # the last batch of maps ended past the share
        files = taught_report["files"]
        raise InputError(maps_out_of_time(files, files, taught_report["seconds"], minutes * 60, cache))
    report = train_anchornet(
        out,
        images=images,
        budget_minutes=left,
        seed=seed,
        work_dir=work_dir,
        source=taught,
        small_window_share=ANCHORNET_WINDOW_SHARE,
    )
    return {**report, "teacher": taught_report, "mirrored": folder.mirror}


def _weights_id(spec: str) -> str:
    """The spec and its checkpoint's sha256, so maps made by other weights under the same path are not reused."""
    return f"{spec}@{sha256_of(Path(str(split_checkpoint(spec)[1])))}"
