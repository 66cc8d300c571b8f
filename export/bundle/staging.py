"""Write a bundle directory so that a failed or interrupted export never leaves a broken one.

Everything is written into a fresh sibling directory first; only when every
file and bundle.json are complete does it replace the target, by two renames
(the old one aside, the new one in). A reader therefore sees the old bundle
or the new one, never a mix; for the instant between the renames it sees
none, and a crash there leaves the old bundle whole at .NAME.previous.
"""

from __future__ import annotations

import contextlib
import dataclasses
import shutil
import tempfile
from pathlib import Path
from typing import Iterator

from anchor_edge.bundle import sha256_of
from anchor_edge.bundle.choices import Role
from anchor_edge.bundle.schema import MANIFEST_NAME, Manifest, Models, manifest_text


@contextlib.contextmanager
def staged_bundle(out: Path) -> Iterator[Path]:
    """Yield an empty staging directory; on success it becomes `out`, on error it is removed."""
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{out.name}.staging-", dir=out.parent))
    try:
        yield staging
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    previous = out.with_name(f".{out.name}.previous")
    shutil.rmtree(previous, ignore_errors=True)
    if out.exists():
        out.rename(previous)
    staging.rename(out)
    shutil.rmtree(previous, ignore_errors=True)


def write_manifest(bundle_dir: Path, manifest: Manifest) -> Manifest:
    """Fill in each model's sha256 from the file it names, write bundle.json, and return what was written."""
    models = {
        role.value: dataclasses.replace(
            manifest.models[role], sha256=sha256_of(bundle_dir / manifest.models[role].file)
        )
        for role in Role
    }
    written = dataclasses.replace(manifest, models=Models(**models))
    written.check(str(bundle_dir / MANIFEST_NAME))
    (bundle_dir / MANIFEST_NAME).write_text(manifest_text(written), encoding="utf-8")
    return written
