"""Which part of an over-long chat message should retrieval use? (GermanQuAD dev)

``python -m bench.long_messages --index-dir DIR [--questions N]`` over a GermanQuAD index
(``make eval`` keeps one in ``vectors/germanquad``): each dev question is sent alone, and
inside a message with at least 4,000 characters of other passages pasted before or after it.
Prints Success@5 (a gold passage among the top 5) of the question alone and of three ways
to cut the message to 2,000 characters (``RAG_MAX_QUESTION_CHARS``).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from api.openai_compat import retrieval_question
from rag.config import Settings
from rag.service import RagService

DATA = Path(__file__).resolve().parents[1] / "eval" / "data" / "germanquad"
LIMIT = 2000
PASTE_CHARS = 4000


def _head_tail(text: str) -> str:
    half = (LIMIT - 3) // 2
    return f"{text[:half]} … {text[-half:]}" if len(text) > LIMIT else text


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--index-dir", type=Path, required=True)
    parser.add_argument("--questions", type=int, default=12)
    args = parser.parse_args()
    queries = {q["id"]: q["text"] for q in map(json.loads, DATA.joinpath("queries.jsonl").open())}
    gold: dict[str, set[str]] = {}
    for line in DATA.joinpath("qrels.tsv").read_text().splitlines()[1:]:
        qid, doc, _ = line.split("\t")
        gold.setdefault(qid, set()).add(doc)
    corpus = [json.loads(line) for line in DATA.joinpath("corpus.jsonl").open()]
    dev = json.loads(DATA.joinpath("splits.json").read_text())["dev"][: args.questions]
    variants: dict[str, list[bool]] = {
        "question alone": [],
        "first 2,000 characters": [],
        "start and end": [],
        "retrieval_question (its questions, else start and end)": [],
    }
    service = RagService.from_settings(Settings(_env_file=None, index_dir=args.index_dir)).open()  # type: ignore[call-arg]
    started = time.monotonic()
    for i, qid in enumerate(dev):
        question, relevant = queries[qid], gold[qid]
        parts, k = [], i
        while sum(map(len, parts)) < PASTE_CHARS:  # other passages, a fixed stride apart
            k = (k + 7) % len(corpus)
            if corpus[k]["id"] not in relevant:
                parts.append(corpus[k]["text"])
        paste = "\n\n".join(parts)

        def found(text: str, relevant: set[str] = relevant) -> bool:
            return any(h.chunk.doc_id in relevant for h in service.search(text, top_k=5))

        variants["question alone"].append(found(question))
        for message in (f"{question}\n\n{paste}", f"{paste}\n\n{question}"):
            variants["first 2,000 characters"].append(found(message[:LIMIT]))
            variants["start and end"].append(found(_head_tail(message)))
            cut = retrieval_question(message, LIMIT)
            variants["retrieval_question (its questions, else start and end)"].append(found(cut))
        print(f"{i + 1}/{len(dev)} questions, {time.monotonic() - started:.0f} s", file=sys.stderr)
    service.close()
    print("| retrieval text | Success@5 | messages |\n|---|---|---|")
    for name, hits in variants.items():
        print(f"| {name} | {sum(hits) / len(hits):.3f} | {len(hits)} |")


if __name__ == "__main__":
    main()
