"""Write a bundle directory so that a failed or interrupted export never leaves a broken one.

Everything is written into a fresh sibling directory first; only when every
file and bundle.json are complete does it replace the target, by renames.
A reader therefore sees either the old bundle or the new one, never a mix.
"""
from __future__ import annotations

import contextlib
import json
import shutil
import tempfile
from pathlib import Path
from typing import Iterator

from anchor_edge.bundle import sha256_of


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


def write_manifest(bundle_dir: Path, manifest: dict) -> None:
    """Fill in each model's sha256 from the file it names, then write bundle.json."""
    for entry in manifest["models"].values():
        entry["sha256"] = sha256_of(bundle_dir / entry["file"])
    (bundle_dir / "bundle.json").write_text(json.dumps(manifest, indent=2) + "\n", encoding="utf-8")
