"""Ingest a folder into an index with the fake embedder, printing each committed batch.

Run as a separate process by tests/test_crash.py and tests/test_postgres.py, which kill it
with SIGKILL at random moments. The fake embedder keeps it fast; SQLite, FAISS and the file
lock, or PostgreSQL (when the index argument is a postgresql:// URL), are the real ones.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from rag.ingest.loaders import iter_documents
from rag.store.factory import open_index
from rag.store.index import Progress
from rag.testing import FakeEmbedder


def main() -> None:
    corpus, where, batch = Path(sys.argv[1]), sys.argv[2], int(sys.argv[3])
    url = where if where.startswith("postgresql://") else None
    index = open_index(Path(where), FakeEmbedder(), lock_timeout_s=5, database_url=url)

    def on_progress(p: Progress) -> None:
        print(json.dumps({"documents": p.documents}), flush=True)

    index.ingest(iter_documents([corpus]), batch_docs=batch, on_progress=on_progress)
    print(json.dumps({"done": True}), flush=True)


if __name__ == "__main__":
    main()
