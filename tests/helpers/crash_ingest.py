"""Ingest a folder into an index with the fake embedder, printing each committed batch.

Run as a separate process by tests/test_crash.py, which kills it with SIGKILL at random
moments. The fake embedder keeps it fast; SQLite, FAISS and the file lock are the real ones.
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
    corpus, index_dir, batch = Path(sys.argv[1]), Path(sys.argv[2]), int(sys.argv[3])
    index = open_index(index_dir, FakeEmbedder(), lock_timeout_s=5)

    def on_progress(p: Progress) -> None:
        print(json.dumps({"documents": p.documents}), flush=True)

    index.ingest(iter_documents([corpus]), batch_docs=batch, on_progress=on_progress)
    print(json.dumps({"done": True}), flush=True)


if __name__ == "__main__":
    main()
