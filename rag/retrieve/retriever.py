"""Hybrid retrieval: dense (FAISS) + German lexical (BM25), fused, filtered, de-duplicated."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Literal

import numpy as np

from rag.cache import BoundedCache
from rag.embedding.base import NEAR_DUPLICATE_COSINE
from rag.retrieve.alignment import TokenBank
from rag.retrieve.answer_types import expected_answer_type, quoted_terms
from rag.retrieve.fusion import fuse
from rag.retrieve.question_parts import question_parts
from rag.store.base import DocumentMeta, text_key
from rag.store.index import Index
from rag.text.analysis import detect_language
from rag.types import Chunk, Filters, FloatArray, Hit, Location

Mode = Literal["hybrid", "dense", "lexical"]


@dataclass(frozen=True)
class FusionConfig:
    """Fusion settings; every default was chosen on dev splits (docs/tuning.md)."""

    # Convex (min-max normalised weighted sum) or "rrf"; convex won on GermanQuAD dev.
    method: str = "convex"
    weights_de: tuple[float, float] = (1.0, 0.5)  # (dense, lexical) for German questions
    weights_en: tuple[float, float] = (1.0, 0.1)  # other languages: lexical sees only names
    rrf_k: int = 60
    candidates: int = 50  # per retriever, before fusion
    # Dense score = w * cos(chunk) + (1 - w) * best cos over the chunk and its sentence
    # windows. German questions: 0.0 (max pooling) was best on both dev splits. Other
    # languages: 0.3, fitted on XQuAD dev's English questions (forked windows, made in German
    # context, are the weaker evidence across languages).
    chunk_weight_de: float = 0.0
    chunk_weight_en: float = 0.3
    # The first ``rerank_depth`` passages are re-ranked by score + w * (token alignment -
    # the best one's) (``rag.retrieve.alignment``). German questions: 0 (GermanQuAD dev
    # lost by it). Other languages: 1.0, the start of a plateau on XQuAD dev's English
    # questions.
    rerank_weight_de: float = 0.0
    rerank_weight_en: float = 1.0
    rerank_depth: int = 10
    near_duplicate_cosine: float = NEAR_DUPLICATE_COSINE
    # Multi-part questions ("Wie …, und was …?"): search the whole and each part, interleave.
    decompose: bool = True
    # Designation questions ("Wie nennt …?"): interleave this many passages whose quoted
    # phrase is closest to the question (0 = off).
    term_passages: int = 2


def interleave(rankings: Sequence[Sequence[tuple[int, float]]]) -> list[tuple[int, float]]:
    """Round-robin merge of best-first rankings, each id once (at its first turn).

    A score is the one from the ranking that placed the id, capped at the score before it,
    so the merged list still reads best first.
    """
    merged: list[tuple[int, float]] = []
    seen: set[int] = set()
    cursors = [0] * len(rankings)
    while any(c < len(r) for c, r in zip(cursors, rankings, strict=True)):
        for i, ranking in enumerate(rankings):
            while cursors[i] < len(ranking) and ranking[cursors[i]][0] in seen:
                cursors[i] += 1
            if cursors[i] < len(ranking):
                cid, score = ranking[cursors[i]]
                cursors[i] += 1
                seen.add(cid)
                cap = merged[-1][1] if merged else score
                merged.append((cid, min(score, cap)))
    return merged


class Retriever:
    """Answers ``search(query, top_k, filters)`` over an ``Index``."""

    def __init__(
        self,
        index: Index,
        *,
        mode: Mode = "hybrid",
        fusion: FusionConfig | None = None,
        tokens: TokenBank | None = None,
    ):
        self.index = index
        self.mode: Mode = mode
        self.fusion = fusion or FusionConfig()
        self.tokens = tokens or TokenBank(index.embedder)
        self._term_vectors: BoundedCache[str, FloatArray] = BoundedCache(10_000)  # quoted phrases

    def search(
        self,
        query: str,
        top_k: int = 5,
        filters: Filters | None = None,
        *,
        mode: Mode | None = None,
        query_vector: FloatArray | None = None,
    ) -> list[Hit]:
        """The ``top_k`` best passages for ``query`` (after filtering and de-duplication).

        ``query_vector`` skips embedding the query (evaluation compares modes on one vector).
        """
        mode = mode or self.mode
        self.index.refresh()
        allowed: set[int] | None = None
        if filters is not None and not filters.is_empty():
            allowed = self.index.store.chunk_ids_matching(
                doc_ids=filters.doc_ids,
                sources=filters.sources,
                published_from=filters.published_from,
                published_to=filters.published_to,
            )
            if not allowed:
                return []
        # Fetch extra candidates: de-duplication may fold several into one hit.
        n = max(self.fusion.candidates, top_k * 3)
        parts = question_parts(query) if self.fusion.decompose else []
        part_vectors: list[FloatArray | None] = [None] * len(parts)
        if mode != "lexical":
            # The question and its parts in one forward pass: a batch of a few short texts
            # costs about what one does. The question's vector also serves the designation
            # check below.
            texts = [query, *parts] if query_vector is None else parts
            vectors = list(self.index.embedder.embed_queries(texts)) if texts else []
            if query_vector is None:
                query_vector = vectors.pop(0)
            part_vectors = list(vectors)
            self.tokens.remember_vector(query, query_vector)  # the answer needs it again
        ranked, dense, lexical = self._ranking(query, mode, n, allowed, query_vector)
        if parts:
            lists = [ranked]
            for part, vector in zip(parts, part_vectors, strict=True):
                part_ranked, part_dense, part_lexical = self._ranking(
                    part, mode, n, allowed, vector
                )
                lists.append(part_ranked)
                for cid, s in part_dense.items():
                    dense.setdefault(cid, s)
                for cid, s in part_lexical.items():
                    lexical.setdefault(cid, s)
            ranked = interleave(lists)
        if (
            mode != "lexical"
            and query_vector is not None
            and self.fusion.term_passages
            and expected_answer_type(query) == "term"
        ):
            ranked = interleave([ranked, self._term_ranking(query_vector, ranked[:n])])
        german = detect_language(query) == "de"
        weight = self.fusion.rerank_weight_de if german else self.fusion.rerank_weight_en
        if mode == "lexical" or weight <= 0.0:
            return self._hits(ranked, dense, lexical, top_k)
        hits = self._hits(ranked, dense, lexical, max(top_k, self.fusion.rerank_depth))
        return self._reranked(query, hits, weight)[:top_k]

    def _reranked(self, query: str, hits: list[Hit], weight: float) -> list[Hit]:
        """The first ``rerank_depth`` hits re-ranked by their token alignment with the
        question; the rest follow, their scores capped below the re-ranked ones."""
        head, tail = hits[: self.fusion.rerank_depth], hits[self.fusion.rerank_depth :]
        aligned = self.tokens.passage_alignments(query, [h.chunk for h in head])
        if not aligned:
            return hits
        best = max(aligned)
        scored = [
            replace(h, score=h.score + weight * (a - best))
            for h, a in zip(head, aligned, strict=True)
        ]
        scored.sort(key=lambda h: -h.score)  # stable: ties keep the fused order
        floor = scored[-1].score
        return scored + [replace(h, score=min(h.score, floor)) for h in tail]

    def _term_ranking(
        self, qvec: FloatArray, ranked: Sequence[tuple[int, float]]
    ) -> list[tuple[int, float]]:
        """The candidates quoting the term closest to the question, best first.

        "Wie nennt der Kommentar Russlands Krieg in der Ukraine?" asks for a designation, and
        news text quotes designations („spezielle Militärkampagne“). Each candidate's quoted
        phrases are embedded like queries (short text against short text) and the
        candidate scores as its best phrase.
        """
        chunks = self.index.store.get_chunks([cid for cid, _ in ranked])
        terms = {cid: quoted_terms(chunk.text) for cid, chunk in chunks.items()}
        kept = {t: self._term_vectors.get(t) for ts in terms.values() for t in ts}
        vectors = {t: v for t, v in kept.items() if v is not None}
        missing = sorted(t for t, v in kept.items() if v is None)
        if missing:
            for term, vec in zip(missing, self.index.embedder.embed_queries(missing), strict=True):
                self._term_vectors.put(term, vec)
                vectors[term] = vec
        scored = [
            (cid, max(float(vectors[t] @ qvec) for t in ts)) for cid, ts in terms.items() if ts
        ]
        scored.sort(key=lambda item: -item[1])
        return scored[: self.fusion.term_passages]

    def _ranking(
        self,
        query: str,
        mode: Mode,
        n: int,
        allowed: set[int] | None,
        query_vector: FloatArray | None,
    ) -> tuple[list[tuple[int, float]], dict[int, float], dict[int, float]]:
        """One query's ranking, best first, and the dense and lexical scores behind it."""
        dense: list[tuple[int, float]] = []
        lexical: list[tuple[int, float]] = []
        language = detect_language(query)
        german = language == "de"
        if mode in ("hybrid", "dense"):
            qvec = (
                query_vector
                if query_vector is not None
                else self.index.embedder.embed_queries([query])[0]
            )
            a = self.fusion.chunk_weight_de if german else self.fusion.chunk_weight_en
            dense = self._with_windows(qvec, self.index.dense_search(qvec, n, allowed), a)
        if mode in ("hybrid", "lexical"):
            lexical = self.index.lexical_search(query, n, allowed)
        if mode == "dense":
            ranked = dense
        elif mode == "lexical":
            ranked = lexical
        else:
            weights = self.fusion.weights_de if german else self.fusion.weights_en
            ranked = fuse(
                dense,
                lexical,
                method=self.fusion.method,
                weights=weights,
                k=self.fusion.rrf_k,
                language=language,
            )
        return list(ranked), dict(dense), dict(lexical)

    def _with_windows(
        self, qvec: FloatArray, dense: list[tuple[int, float]], a: float
    ) -> list[tuple[int, float]]:
        """Re-score dense candidates with their best window at chunk weight ``a``, best first."""
        if a >= 1.0 or not dense:
            return dense
        windows = self.index.store.windows_for([c for c, _ in dense], len(qvec))
        best = dict(dense)
        owners = [cid for cid, vecs in windows.items() if len(vecs) and cid in best]
        if owners:
            # one product over every candidate's windows, then the best per candidate
            sims = np.concatenate([windows[c] for c in owners]) @ qvec
            starts = np.cumsum([0] + [len(windows[c]) for c in owners[:-1]])
            for cid, top in zip(owners, np.maximum.reduceat(sims, starts), strict=True):
                best[cid] = max(best[cid], float(top))
        scored = [(cid, a * score + (1.0 - a) * best[cid]) for cid, score in dense]
        # stable: equal scores keep the FAISS order
        return sorted(scored, key=lambda item: -item[1])

    def _hits(
        self,
        ranked: Sequence[tuple[int, float]],
        dense: dict[int, float],
        lexical: dict[int, float],
        top_k: int,
    ) -> list[Hit]:
        kept, folded = self._fold_duplicates(ranked, top_k)
        store = self.index.store
        exact_twins = store.duplicates_of([c.chunk_id for c, _ in kept])
        twins = {
            chunk.chunk_id: folded.get(chunk.chunk_id, []) + exact_twins.get(chunk.chunk_id, [])
            for chunk, _ in kept
        }
        docs = store.document_meta(
            {c.doc_id for c, _ in kept} | {o.doc_id for others in twins.values() for o in others}
        )
        hits = []
        for chunk, score in kept:
            others: dict[int, Chunk] = {}
            for other in twins[chunk.chunk_id]:
                others.setdefault(other.chunk_id, other)
            doc = docs.get(chunk.doc_id)
            hits.append(
                Hit(
                    chunk=chunk,
                    score=float(score),
                    title=doc.title if doc else "",
                    url=doc.url if doc else None,
                    published=doc.published if doc else None,
                    source=doc.source if doc else None,
                    dense_score=dense.get(chunk.chunk_id),
                    lexical_score=lexical.get(chunk.chunk_id),
                    duplicates=tuple(_location(o, docs) for o in others.values()),
                )
            )
        return hits

    def _fold_duplicates(
        self, ranked: Sequence[tuple[int, float]], top_k: int
    ) -> tuple[list[tuple[Chunk, float]], dict[int, list[Chunk]]]:
        """The best ``top_k`` distinct chunks, and the near-duplicates folded into each."""
        ids = [cid for cid, _ in ranked]
        chunks: dict[int, Chunk] = {}
        vecs: dict[int, FloatArray] = {}
        kept: list[tuple[Chunk, float]] = []
        folded: dict[int, list[Chunk]] = {}
        kept_vecs: list[FloatArray] = []
        kept_keys: list[str] = []
        page = 2 * top_k  # read ahead a page at a time: most queries keep the first top_k
        for at, (cid, score) in enumerate(ranked):
            if at % page == 0:
                chunks.update(self.index.store.get_chunks(ids[at : at + page]))
                vecs.update(self.index.store.embeddings_for(ids[at : at + page]))
            chunk = chunks.get(cid)
            if chunk is None:  # deleted by another process since the FAISS snapshot
                continue
            vec, key = vecs[cid], text_key(chunk.text)
            # Same normalised text (syndicated copy) or nearly the same vector: one hit.
            twin = next(
                (
                    i
                    for i, kv in enumerate(kept_vecs)
                    if kept_keys[i] == key
                    or float(np.dot(kv, vec)) >= self.fusion.near_duplicate_cosine
                ),
                None,
            )
            if twin is not None:
                folded.setdefault(kept[twin][0].chunk_id, []).append(chunk)
                continue
            kept.append((chunk, score))
            kept_vecs.append(vec)
            kept_keys.append(key)
            if len(kept) >= top_k:
                break
        return kept, folded


def _location(chunk: Chunk, docs: Mapping[str, DocumentMeta]) -> Location:
    meta = docs.get(chunk.doc_id)
    return Location(
        doc_id=chunk.doc_id,
        chunk_id=chunk.chunk_id,
        start=chunk.start,
        end=chunk.end,
        title=meta.title if meta else "",
    )
