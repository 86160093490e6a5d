from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from rag.errors import IndexCorruptError
from rag.store.faiss import FaissVectorStore, choose_kind


def unit(n: int, d: int = 16, seed: int = 0) -> np.ndarray:
    x = np.random.default_rng(seed).standard_normal((n, d)).astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


@pytest.mark.parametrize("kind", ["exact", "hnsw", "ivf"])
def test_add_search_remove_filter(kind: str) -> None:
    x = unit(300)
    ids = np.arange(300, dtype=np.int64) * 7 + 3
    store = FaissVectorStore.build(ids, x, kind)  # type: ignore[arg-type]
    assert len(store) == 300
    hits = store.search(x[10], 5)
    assert hits[0][0] == ids[10]
    assert hits[0][1] == pytest.approx(1.0, abs=1e-4)
    allowed = {int(ids[20]), int(ids[30])}
    filtered = store.search(x[10], 5, allowed)
    assert {h[0] for h in filtered} == allowed  # top_k holds after filtering
    store.remove([int(ids[10])])
    assert len(store) == 299
    assert all(h[0] != ids[10] for h in store.search(x[10], 5))


def test_save_load_roundtrip_and_damage(tmp_path: Path) -> None:
    x = unit(50)
    store = FaissVectorStore.build(list(range(50)), x)
    path = tmp_path / "v.index"
    sha = store.save(path)
    loaded = FaissVectorStore.load(path, expected_sha256=sha)
    assert loaded.ids().tolist() == list(range(50))
    assert loaded.search(x[3], 1)[0][0] == 3
    path.write_bytes(path.read_bytes()[:100])
    with pytest.raises(IndexCorruptError):
        FaissVectorStore.load(path)


def test_choose_kind() -> None:
    assert choose_kind("auto", 10, 100) == "exact"
    assert choose_kind("auto", 100, 100) == "hnsw"
    assert choose_kind("ivf", 1, 100) == "ivf"
    with pytest.raises(ValueError, match="unknown index kind"):
        choose_kind("lsh", 1, 1)
