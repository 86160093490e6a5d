"""Lexical-side benchmarks: GermanQuAD quality and search speed at scale.

    python bench/bench_lexical.py quality [--split dev|test] [--k1 1.2] [--b 0.75] [--ablate]
    python bench/bench_lexical.py speed [--chunks 100000] [--batch 20]
    python bench/bench_lexical.py fusion [--split dev|test] [--index-dir DIR]

``quality`` indexes the 474 GermanQuAD passages whole into a LexicalIndex (a temporary
SQLite file) and reports lexical-only MRR@10 / Success@1 / Success@5 of the split's
questions over the full corpus. ``--ablate`` repeats it for each analysis step switched off.
Tune on ``dev`` only; ``test`` is for the final number.

``speed`` builds an index of N chunks (GermanQuAD paragraphs repeated under new ids, so
common terms get realistic document frequencies) and times single-query search.

``fusion`` ingests GermanQuAD through the real ``Index`` (chunking, multilingual-e5-small,
lexical postings), takes the top 50 dense and lexical chunks per question and compares
dense-only, lexical-only and fused rankings (documents ranked by their best chunk), for the
split's German questions and, on ``dev``, for 80 of them translated to English by hand
(``ENGLISH_DEV``), which check that English questions do not lose from the lexical side.
"""

from __future__ import annotations

import argparse
import json
import sqlite3
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from rag.store.lexical import LexicalIndex
from rag.text.analysis import GermanAnalyzer

DATA = Path(__file__).resolve().parents[1] / "eval" / "data" / "germanquad"


def load(
    data: Path,
) -> tuple[list[dict[str, str]], dict[str, str], dict[str, str], dict[str, list[str]]]:
    corpus = [json.loads(line) for line in (data / "corpus.jsonl").open(encoding="utf-8")]
    queries = {
        q["id"]: q["text"] for q in map(json.loads, (data / "queries.jsonl").open(encoding="utf-8"))
    }
    qrels = {}
    for line in (data / "qrels.tsv").read_text(encoding="utf-8").splitlines()[1:]:
        qid, did, _ = line.split("\t")
        qrels[qid] = did
    splits = json.loads((data / "splits.json").read_text(encoding="utf-8"))
    return corpus, queries, qrels, splits


def quality(args: argparse.Namespace) -> None:
    corpus, queries, qrels, splits = load(args.data)
    variants = {"full": GermanAnalyzer()}
    if args.ablate:
        variants |= {
            "no decompound": GermanAnalyzer(decompound=False),
            "no stem": GermanAnalyzer(stem=False),
            "no stopwords": GermanAnalyzer(stopwords=False),
            "no folding": GermanAnalyzer(fold=False),
        }
    doc_ids = {i: d["id"] for i, d in enumerate(corpus)}
    for name, analyzer in variants.items():
        with tempfile.TemporaryDirectory() as tmp:
            conn = sqlite3.connect(Path(tmp) / "lex.sqlite3", isolation_level=None)
            index = LexicalIndex(conn, analyzer, k1=args.k1, b=args.b)
            conn.execute("BEGIN")
            index.create_schema()
            t0 = time.perf_counter()
            # The passage text starts with its title already (see the benchmark README).
            index.add([(i, d["text"]) for i, d in enumerate(corpus)])
            conn.execute("COMMIT")
            build = time.perf_counter() - t0
            rr, s1, s5 = [], 0, 0
            t0 = time.perf_counter()
            for qid in splits[args.split]:
                ranked = [doc_ids[c] for c, _ in index.search(queries[qid], 10)]
                rank = ranked.index(qrels[qid]) + 1 if qrels[qid] in ranked else 0
                rr.append(1 / rank if rank else 0.0)
                s1 += rank == 1
                s5 += 0 < rank <= 5
            per_query = (time.perf_counter() - t0) / len(splits[args.split]) * 1000
            conn.close()
        n = len(splits[args.split])
        print(
            f"{name:15s} {args.split} n={n} k1={args.k1} b={args.b}  MRR@10={sum(rr) / n:.4f}"
            f"  S@1={s1 / n:.3f}  S@5={s5 / n:.3f}  (index {build:.1f}s, {per_query:.1f} ms/q)"
        )


def speed(args: argparse.Namespace) -> None:
    corpus, queries, _, splits = load(args.data)
    paragraphs = [
        f"{d['title']}\n{p}" for d in corpus for p in d["text"].split("\n")[1:] if len(p) > 200
    ]
    with tempfile.TemporaryDirectory() as tmp:
        conn = sqlite3.connect(Path(tmp) / "lex.sqlite3", isolation_level=None)
        conn.execute("PRAGMA journal_mode = WAL")
        index = LexicalIndex(conn)
        conn.execute("BEGIN")
        index.create_schema()
        conn.execute("COMMIT")
        t0 = time.perf_counter()
        # Like ingestion: one add() per document (args.batch chunks), a commit per 32 adds.
        step = args.batch * 32
        for start in range(0, args.chunks, step):
            conn.execute("BEGIN")
            for first in range(start, min(start + step, args.chunks), args.batch):
                last = min(first + args.batch, args.chunks)
                index.add([(i, paragraphs[i % len(paragraphs)]) for i in range(first, last)])
            conn.execute("COMMIT")
        build = time.perf_counter() - t0
        size = (Path(tmp) / "lex.sqlite3").stat().st_size + (
            Path(tmp) / "lex.sqlite3-wal"
        ).stat().st_size
        qs = [queries[q] for q in splits["dev"][:200]]
        times = []
        for q in qs:
            t0 = time.perf_counter()
            index.search(q, 50)
            times.append((time.perf_counter() - t0) * 1000)
        allowed = set(range(0, args.chunks, 3))
        ftimes = []
        for q in qs[:50]:
            t0 = time.perf_counter()
            index.search(q, 50, allowed)
            ftimes.append((time.perf_counter() - t0) * 1000)
        conn.close()
    times.sort()
    print(
        f"{args.chunks} chunks ({args.batch} per add): built in {build:.0f}s "
        f"({args.chunks / build:.0f} chunks/s), "
        f"{size / 1e6:.0f} MB; search k=50: median {statistics.median(times):.1f} ms, "
        f"p95 {times[int(0.95 * len(times))]:.1f} ms, max {times[-1]:.1f} ms; "
        f"with a 1/3 filter: median {statistics.median(ftimes):.1f} ms"
    )


def fusion(args: argparse.Namespace) -> None:
    from rag.embedding.embedder import SentenceTransformerEmbedder
    from rag.ingest.loaders import document_from_text
    from rag.retrieve.fusion import fuse
    from rag.store.factory import open_index
    from rag.text.analysis import detect_language

    corpus, queries, qrels, splits = load(args.data)
    asked = {qid: queries[qid] for qid in splits[args.split]}
    if args.split == "dev":
        for line in ENGLISH_DEV.strip().splitlines():
            qid, text = line.split("\t")
            asked[f"en:{qid}"] = text
            qrels[f"en:{qid}"] = qrels[qid]
    embedder = SentenceTransformerEmbedder(model_dir=args.model_dir)
    with tempfile.TemporaryDirectory() as tmp:
        index = open_index(args.index_dir or Path(tmp), embedder)
        docs = [document_from_text(d["id"], d["text"], title=d["title"] or None) for d in corpus]
        index.ingest(docs)
        doc_of = {
            c.chunk_id: c.doc_id for d in index.store.doc_ids() for c in index.store.chunks_of(d)
        }
        vectors = embedder.embed_queries(list(asked.values()))
        lists = {
            qid: (index.dense_search(v, 50), index.lexical_search(text, 50), detect_language(text))
            for (qid, text), v in zip(asked.items(), vectors, strict=True)
        }
        index.close()

    def mrr(qids: list[str], rank: Callable[[str], list[tuple[int, float]]]) -> float:
        total = 0.0
        for qid in qids:
            docs_ranked: list[str] = []
            for chunk_id, _ in rank(qid):
                if doc_of[chunk_id] not in docs_ranked:
                    docs_ranked.append(doc_of[chunk_id])
            if qrels[qid] in docs_ranked[:10]:
                total += 1 / (docs_ranked.index(qrels[qid]) + 1)
        return total / max(len(qids), 1)

    german = [q for q in asked if not q.startswith("en:")]
    english = [q for q in asked if q.startswith("en:")]
    configs: list[tuple[str, Callable[[str], list[tuple[int, float]]]]] = [
        ("dense only", lambda q: lists[q][0]),
        ("lexical only", lambda q: lists[q][1]),
    ]
    # The grid is for dev; test gets only the configuration chosen on dev.
    grids = (("rrf", RRF_GRID), ("convex", CONVEX_GRID)) if args.split == "dev" else CHOSEN
    for method, grid in grids:
        for k, weights in grid:
            configs.append(
                (
                    f"{method} k={k} w={weights}" if method == "rrf" else f"convex w={weights}",
                    lambda q, m=method, k=k, w=weights: fuse(
                        lists[q][0], lists[q][1], method=m, weights=w, k=k, language=lists[q][2]
                    ),
                )
            )
    print(f"GermanQuAD {args.split}: {len(german)} German, {len(english)} English questions")
    for name, rank in configs:
        line = f"{name:34s} de MRR@10={mrr(german, rank):.4f}"
        if english:
            line += f"   en MRR@10={mrr(english, rank):.4f}"
        print(line)


RRF_GRID = [(k, w) for k in (10, 60) for w in ((1.0, 1.0), (1.0, 0.7), (1.0, 0.5), (1.0, 0.1))]
CONVEX_GRID = [(0, w) for w in ((1.0, 1.0), (1.0, 0.7), (1.0, 0.5), (1.0, 0.3), (1.0, 0.1))]
CHOSEN = (("convex", [(0, (1.0, 0.5))]),)  # German questions; English gets (1.0, 0.1)


# 80 GermanQuAD dev questions (random.Random(7).sample of the dev ids), translated by hand;
# derived from GermanQuAD (deepset, CC BY 4.0; see eval/data/germanquad/README.md).
ENGLISH_DEV = """
q40399	How many people in Mali speak Bambara as their mother tongue?
q37655	How do monotremes differ from other mammals?
q41280	When was the Edict of Gülhane issued?
q36825	What was the CIA responsible for during the Korean War?
q37085	How much does a man's brain weigh on average?
q37210	In which disciplines does the concept of emotion play a role?
q41062	Where did Tibet export most of its timber in the fifties?
q36836	Why did David Petraeus resign from his post in 2012?
q45366	What did Queen Victoria call the crown during her widowhood?
q38099	From which century do the first written works in the Catalan language date?
q36751	What is needed to calculate the Carnot efficiency method?
q37173	Where did King William III come from?
q41480	What was the goal of the British expedition to Tibet?
q41422	Which god did Diocletian recall with the name he chose for himself?
q37022	Who became King of England in 1689?
q38152	Which products grown in Liberia are exported to the USA?
q37200	Who became governor of Pennsylvania after Ed Rendell?
q41428	From when was the free practice of all religions allowed in the Roman Empire?
q36837	Who was appointed the new US Secretary of State in 2018?
q37379	Who had to keep order in the settlement of Nieuw Amsterdam in 1647?
q38108	When did the War of the Spanish Succession take place?
q36861	What major problems arose in the Central African Republic after independence?
q41283	When was the Greek population expelled from the Ottoman Empire?
q36826	When did the CIA start spy flights abroad?
q38106	Who produced the first Catalan dictionary?
q36823	Who was the first CIA director?
q37440	What is supposed to happen in the final battle of Armageddon?
q38615	What is Chopin's baptismal name?
q41423	What was the name Diocletian chose for himself?
q37507	What is the name of the park railway of Chapultepec Park?
q37351	Which countries lie east of Iran?
q38851	What is the second most important river in Africa?
q37762	What was special about the 2001 FA Cup final?
q37263	How is the activity of a gene controlled?
q37772	When is the FA Cup final?
q41125	Which Arab rulers viewed the Kurdish war of independence favourably?
q37215	What distinguishes emotions from feelings?
q36862	How many of the inhabitants of the Central African Republic live in the countryside?
q36838	Who is the current head of the CIA?
q38070	Where in Switzerland does it snow the least?
q44120	Which allergies are the most common?
q41431	Over the altar of which goddess was there a dispute in the Roman Senate in the 4th century?
q40239	Who was US Secretary of State in 1939?
q41611	Since when has Cyprus been a member of the EU?
q41558	Which event marks the beginning of the Heian period?
q41035	What did Arnold Schwarzenegger start doing in 1975?
q38777	How were the German Protestant regional churches organised?
q38241	Which newspaper in Great Britain is similar to BILD in Germany?
q37761	Where is the FA Cup final played?
q38210	Which currency does Norfolk Island use?
q37095	How can the difference between the two brain hemispheres of men and women be explained?
q38779	In which countries is the number of Protestant churches growing particularly fast?
q44115	When does the immune system overreact to certain foreign structures?
q40503	How long did the construction of the Camp de Les Corts take?
q41522	Which technical achievement was developed in the Copper Age?
q38613	Where was Chopin born?
q45651	Which phase of the Neolithic does the Tisza culture mark?
q37699	What does the landscape of the Piedmont region of North Carolina look like?
q40502	How many fans fit into FC Barcelona's first stadium?
q37657	Which body part is typical of monotremes?
q44039	When did Montesquieu publish the Persian Letters?
q41425	Why were the early Christians persecuted in the Roman Empire?
q36763	Who maintains most of Portugal's toll roads?
q37090	What is the difference between the hippocampus of a man and that of a woman?
q40500	Where did FC Barcelona play its first match?
q40545	When was Arnold Schwarzenegger in a weightlifting gym for the first time?
q41562	Which Japanese script originated in the Heian period?
q37015	What is the AWMF guideline on how doctors should assess pain for?
q37204	Which US state has the fewest executions relative to its population?
q38463	Which high offices did Athanasius the Great hold?
q42100	In which year did the British-French conflict in North America worsen?
q36864	What does the trade balance of the Central African Republic look like?
q36860	What mainly hindered the development of the Central African Republic until independence?
q38853	Since when have there been severe droughts in Mali?
q41518	Which technical innovation is characteristic of the Ceramic Neolithic?
q38575	From which noble family did the stadtholder of the Republic of the United Provinces come?
q41195	What did Charles Darwin prove in his main work?
q40523	What do the colours of the Paris flag stand for?
q36667	How long did the Israeli War of Independence last?
q41567	Which office was introduced in Japan in 1086 for former monarchs?
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=DATA)
    sub = parser.add_subparsers(dest="cmd", required=True)
    q = sub.add_parser("quality")
    q.add_argument("--split", choices=["dev", "test"], default="dev")
    q.add_argument("--k1", type=float, default=1.2)
    q.add_argument("--b", type=float, default=0.75)
    q.add_argument("--ablate", action="store_true")
    s = sub.add_parser("speed")
    s.add_argument("--chunks", type=int, default=100_000)
    s.add_argument("--batch", type=int, default=20, help="chunks per add()")
    f = sub.add_parser("fusion")
    f.add_argument("--split", choices=["dev", "test"], default="dev")
    f.add_argument("--model-dir", type=Path, default=Path("vectors/models"))
    f.add_argument("--index-dir", type=Path, default=None, help="keep the index here")
    args = parser.parse_args()
    {"quality": quality, "speed": speed, "fusion": fusion}[args.cmd](args)


if __name__ == "__main__":
    main()
