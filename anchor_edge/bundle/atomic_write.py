"""Replace a file so that a crash never leaves it torn: bundle.json, engines and timing caches are written this way.

Both stages update files inside a bundle (the export records engines, the
runtime records `anchor-edge verify` results), and a half-written bundle.json
would make the whole bundle unreadable.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Any


def write_atomically(path: Path, data: Any) -> None:
    """Write bytes (or any buffer) to `path` through a temporary file in the same folder and os.replace.

    The file keeps its permissions (0o644 when new); the temporary file is removed on any failure.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        os.chmod(temporary, path.stat().st_mode if path.exists() else 0o644)  # mkstemp makes it owner-only
        with os.fdopen(handle, "wb") as stream:
            stream.write(data)
            stream.flush()
            os.fsync(stream.fileno())
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
