"""Rebuild an index from scratch (e.g. for a new embedding model), keeping the old one safe.

The new index is built in a sibling folder; only when it is complete does it take the old
one's place, so a crash or Ctrl-C during the rebuild leaves the previous index as it was.
"""

from __future__ import annotations

import shutil
import time
from collections.abc import Sequence
from pathlib import Path

from rag.config import Settings
from rag.store.index import IngestReport


def rebuild_index(settings: Settings, paths: Sequence[Path]) -> IngestReport:
    """Ingest ``paths`` into a fresh index and swap it in for ``settings.index_dir``."""
    from rag.ingest.loaders import iter_documents
    from rag.service import RagService

    target = settings.index_dir.resolve()
    staging = target.with_name(f"{target.name}.rebuild-{int(time.time())}")
    shutil.rmtree(staging, ignore_errors=True)
    service = RagService.from_settings(settings.model_copy(update={"index_dir": staging}))
    try:
        report = service.index.ingest(iter_documents(list(paths)))
    finally:
        service.close()
    # Keep what lives beside the index files (e.g. the model cache under vectors/models).
    if target.exists():
        for name in ("models",):
            if (target / name).exists():
                (target / name).rename(staging / name)
    old = target.with_name(f"{target.name}.old-{int(time.time())}")
    if target.exists():
        target.rename(old)
    staging.rename(target)
    shutil.rmtree(old, ignore_errors=True)
    return report
