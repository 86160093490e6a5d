"""The ``rag`` command line: ingest, inspect, search, ask, evaluate, serve, prepare models."""

from __future__ import annotations

import argparse
import importlib
import json
import logging
import os
import sys
import threading
from collections.abc import Iterator, Sequence
from pathlib import Path

from rag.config import Settings, get_settings
from rag.errors import ConfigError, RagError
from rag.types import Filters

EXIT_OK = 0
EXIT_ERROR = 1
EXIT_SKIPPED = 3  # ingest finished, but some files could not be read


def _service(settings: Settings):  # type: ignore[no-untyped-def]
    # Imported here: `rag --help` should not pay for torch and sentence-transformers.
    from rag.service import RagService

    return RagService.from_settings(settings)


def _filters(args: argparse.Namespace) -> Filters | None:
    filters = Filters(
        doc_ids=tuple(args.doc or ()),
        sources=tuple(args.source or ()),
        published_from=args.date_from,
        published_to=args.date_to,
    )
    return None if filters.is_empty() else filters


# -- commands -------------------------------------------------------------------------
def cmd_ingest(args: argparse.Namespace, settings: Settings) -> int:
    from tqdm import tqdm

    from rag.ingest.loaders import Skipped, iter_documents
    from rag.store.index import Progress
    from rag.types import Document

    if args.rebuild:
        from rag.rebuild import rebuild_index

        report = rebuild_index(settings, [Path(p) for p in args.paths])
    elif args.ray is not None:
        report = _ingest_on_ray(args, settings)
    else:
        service = _service(settings)
        bar = tqdm(desc="ingest", unit="doc", disable=args.quiet or None)
        state = {"chunks": 0}

        def on_progress(p: Progress) -> None:
            bar.update(p.documents - bar.n)
            state["chunks"] = p.chunks
            bar.set_postfix(chunks=p.chunks, generation=p.generation)
            if args.log_commits:
                print(json.dumps({"committed": list(p.committed_doc_ids)}), flush=True)

        def items() -> Iterator[Document | Skipped]:
            for item in iter_documents([Path(p) for p in args.paths]):
                if isinstance(item, Skipped):
                    tqdm.write(f"skipped {item.path}: {item.reason}", file=sys.stderr)
                yield item

        report = service.index.ingest(items(), prune=args.prune, on_progress=on_progress)
        bar.update(len(report.added) + len(report.updated) + len(report.unchanged) - bar.n)
        bar.close()
        service.close()
    print(report.summary())
    for skipped in report.skipped:
        print(f"  skipped {skipped.path}: {skipped.reason}")
    return EXIT_SKIPPED if report.skipped else EXIT_OK


def _ingest_on_ray(args: argparse.Namespace, settings: Settings):  # type: ignore[no-untyped-def]
    from tqdm import tqdm

    from rag.embedding.resolve import resolve_model
    from rag.ray_ingest import RayOptions, ingest_on_ray
    from rag.store.index import Progress

    options = RayOptions(
        address=args.ray or None,
        actors=args.ray_actors,
        batch_docs=args.ray_batch,
        local_cpus=args.ray_cpus,
        quiet=args.quiet,
    )
    folder = Path(resolve_model(settings.embedding_model, settings.model_dir)[0])
    if not folder.is_dir():
        raise ConfigError(
            f"Ray workers load the model from a folder, and {settings.embedding_model!r} is not "
            "one here: run `rag models prepare` or set RAG_EMBEDDING_MODEL to a model folder"
        )
    service = _service(settings)
    bar = tqdm(desc="ingest (ray)", unit="doc", disable=args.quiet or None)

    def on_progress(p: Progress) -> None:
        bar.update(p.documents - bar.n)
        bar.set_postfix(chunks=p.chunks, generation=p.generation)

    try:
        report, throughput = ingest_on_ray(
            service.index,
            [Path(p) for p in args.paths],
            options,
            model_path=folder,
            model_dir=settings.model_dir,
            backend=settings.embedding_backend,
            prune=args.prune,
            on_progress=on_progress,
        )
    finally:
        bar.close()
        service.close()
    print(throughput.summary())
    return report


def cmd_delete(args: argparse.Namespace, settings: Settings) -> int:
    service = _service(settings)
    for doc_id in args.doc_ids:
        service.delete_document(doc_id)
        print(f"deleted {doc_id}")
    return EXIT_OK


def cmd_stats(args: argparse.Namespace, settings: Settings) -> int:
    service = _service(settings)
    stats = service.stats()
    out = {
        "index_dir": str(settings.index_dir),
        "documents": stats.documents,
        "chunks": stats.chunks,
        "generation": stats.generation,
        "index_kind": stats.index_kind,
        "sqlite_bytes": stats.sqlite_bytes,
        "faiss_bytes": stats.faiss_bytes,
        "database_bytes": stats.database_bytes,
        "embedding_model": stats.embedder.__dict__ if stats.embedder else None,
        "llm": service.llm_name,
        "notes": list(stats.notes),
    }
    if args.json:
        print(json.dumps(out, indent=2, ensure_ascii=False))
    else:
        for key, value in out.items():
            print(f"{key:16} {value}")
    return EXIT_OK


def cmd_chunks(args: argparse.Namespace, settings: Settings) -> int:
    service = _service(settings)
    doc = service.get_document(args.doc_id)
    chunks = service.get_chunks(args.doc_id)
    print(f"{doc.doc_id}: {doc.title} ({len(chunks)} chunks, published {doc.published})")
    for c in chunks:
        tokens = service.embedder.count_tokens(c.text)
        print(f"\n--- #{c.ordinal} id={c.chunk_id} [{c.start}:{c.end}] {tokens} tokens")
        print(c.text)
    return EXIT_OK


def cmd_search(args: argparse.Namespace, settings: Settings) -> int:
    service = _service(settings)
    hits = service.retriever.search(args.query, args.top_k, _filters(args), mode=args.mode)
    if args.json:
        print(json.dumps([_hit_json(h) for h in hits], indent=2, ensure_ascii=False))
        return EXIT_OK
    for rank, hit in enumerate(hits, 1):
        c = hit.chunk
        dense = "-" if hit.dense_score is None else f"{hit.dense_score:.3f}"
        lexical = "-" if hit.lexical_score is None else f"{hit.lexical_score:.2f}"
        print(
            f"{rank}. [{c.doc_id} {c.start}:{c.end}] score={hit.score:.4f} "
            f"dense={dense} lexical={lexical}  {hit.title}"
        )
        print("   " + c.text.replace("\n", " ")[:300])
        for dup in hit.duplicates:
            print(f"   also in {dup.doc_id} [{dup.start}:{dup.end}]")
    return EXIT_OK


def _hit_json(hit: object) -> dict[str, object]:
    from dataclasses import asdict

    return asdict(hit)  # type: ignore[call-overload, no-any-return]


def cmd_ask(args: argparse.Namespace, settings: Settings) -> int:
    service = _service(settings)
    answer = service.ask(args.question, top_k=args.top_k, filters=_filters(args))
    if args.json:
        from dataclasses import asdict

        print(json.dumps(asdict(answer), indent=2, ensure_ascii=False))
        return EXIT_OK
    print(answer.text)
    if answer.citations:
        print("\nQuellen:" if answer.language == "de" else "\nSources:")
        for c in answer.citations:
            mark = "" if c.supported else "  (not supported)"
            print(f"[{c.number}] {c.title} ({c.doc_id}, {c.start}:{c.end}){mark}")
            print(f"    „{c.quote}“")
    if answer.abstained:
        print(f"\n(abstained: {answer.reason})")
    return EXIT_OK


def cmd_eval(args: argparse.Namespace, settings: Settings) -> int:
    from rag.evaluation import run_eval

    return run_eval(
        settings,
        Path(args.path),
        split=args.split,
        out=args.out,
        modes=args.modes,
        index_dir=args.index_dir,
        every=args.every,
    )


def cmd_tune(args: argparse.Namespace, settings: Settings) -> int:
    from rag.tuning import run_tune

    return run_tune(
        settings,
        xquad=Path(args.xquad),
        qa=Path(args.qa) if args.qa else None,
        index_dir=Path(args.index_dir),
        out=Path(args.out),
        with_ablation=args.ablation,
        every=args.every,
    )


def _check_workers(workers: int, settings: Settings) -> None:
    """Several API processes need an index they can all read and write: not the embedded one."""
    if workers > 1 and not settings.database_url:
        raise ConfigError(
            f"--workers {workers} needs the PostgreSQL backend (set RAG_DATABASE_URL): the "
            "embedded SQLite + FAISS index is written by one process, and each worker would "
            "serve its own copy of FAISS that misses the others' writes. Run one worker (it "
            "serves requests concurrently), or move the index to PostgreSQL."
        )


def _serve_workers(app: str, host: str, port: int, workers: int) -> None:
    """N uvicorn processes sharing the port; metrics merged, rate limits split between them."""
    import shutil
    import tempfile

    import uvicorn

    # The workers are spawned: they read these from the environment like any setting.
    metrics_dir = tempfile.mkdtemp(prefix="rag-metrics-")
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = metrics_dir
    os.environ["RAG_WORKERS"] = str(workers)
    try:
        uvicorn.run(app, factory=True, host=host, port=port, workers=workers, log_level="info")
    finally:
        shutil.rmtree(metrics_dir, ignore_errors=True)


def cmd_serve(args: argparse.Namespace, settings: Settings) -> int:
    import uvicorn

    host = args.host or settings.host
    port = settings.port if args.port is None else args.port
    workers = args.workers or settings.workers
    _check_workers(workers, settings)
    # Importing sentence-transformers takes ~6 s; start it now so it overlaps with the
    # freshness check and uvicorn's start-up (the app's lifespan then finds it imported).
    threading.Thread(
        target=importlib.import_module, args=("sentence_transformers",), daemon=True
    ).start()
    if args.ingest:
        from rag.ingest.loaders import load_documents
        from rag.store.factory import is_fresh

        loaded = load_documents([Path(p) for p in args.ingest])
        if is_fresh(settings.index_dir, loaded.documents, settings.window_vectors):
            print(
                f"index in {settings.index_dir} is up to date ({len(loaded.documents)} documents)"
            )
        else:
            ingest = argparse.Namespace(
                paths=args.ingest,
                prune=True,
                rebuild=False,
                quiet=False,
                log_commits=False,
                ray=None,
            )
            cmd_ingest(ingest, settings)
    # An import string, so rag/ does not import api/ (the API layer depends on us).
    if workers > 1:
        _serve_workers("api.main:create_app", host, port, workers)
    else:
        uvicorn.run("api.main:create_app", factory=True, host=host, port=port, log_level="info")
    return EXIT_OK


def cmd_db_upgrade(args: argparse.Namespace, settings: Settings) -> int:
    from rag.store.pg_schema import upgrade

    if not settings.database_url:
        raise ConfigError("set RAG_DATABASE_URL to the PostgreSQL database to upgrade")
    before, after = upgrade(settings.database_url.get_secret_value())
    print(f"database schema at version {after} (was {before})")
    return EXIT_OK


def cmd_db_import(args: argparse.Namespace, settings: Settings) -> int:
    from tqdm import tqdm

    from rag.store.transfer import copy_index

    if not settings.database_url:
        raise ConfigError("set RAG_DATABASE_URL to the PostgreSQL database to import into")
    from rag.service import RagService

    target = _service(settings)
    source = RagService(Path(args.index_dir), target.embedder)  # the same model
    bar = tqdm(total=len(source.index.store.doc_ids()), desc="import", unit="doc")
    report = copy_index(
        source.index, target.index, on_progress=lambda p: bar.update(p.documents - bar.n)
    )
    bar.close()
    print(report.summary())
    return EXIT_OK


def cmd_models_prepare(args: argparse.Namespace, settings: Settings) -> int:
    from rag.embedding.convert import prepare_default_model

    path = prepare_default_model(settings.model_dir, force=args.force)
    print(f"embedding model ready in {path}")
    return EXIT_OK


# -- parser ---------------------------------------------------------------------------
def _add_filters(p: argparse.ArgumentParser) -> None:
    p.add_argument("--doc", action="append", help="only this document id (repeatable)")
    p.add_argument("--source", action="append", help="only this source (repeatable)")
    p.add_argument("--from", dest="date_from", help="published on or after (YYYY-MM-DD)")
    p.add_argument("--to", dest="date_to", help="published on or before (YYYY-MM-DD)")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="rag", description="Question answering over documents with checked citations."
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="log more")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("ingest", help="add or update documents (files or folders)")
    p.add_argument("paths", nargs="+", help="files or folders (.txt .md .html .jsonl)")
    p.add_argument("--prune", action="store_true", help="delete documents not in PATHS")
    p.add_argument(
        "--rebuild", action="store_true", help="build a fresh index (e.g. after a model change)"
    )
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.add_argument(
        "--ray",
        nargs="?",
        const="",
        default=None,
        metavar="ADDRESS",
        help="load, chunk and embed on Ray (a local one without ADDRESS; put it after PATHS)",
    )
    p.add_argument("--ray-actors", type=int, default=1, help="embedding actors (one model each)")
    p.add_argument("--ray-batch", type=int, default=16, help="documents per embedding batch")
    p.add_argument("--ray-cpus", type=int, default=None, help="CPUs of a local Ray (default all)")
    p.add_argument("--log-commits", action="store_true", help=argparse.SUPPRESS)
    p.set_defaults(func=cmd_ingest)

    p = sub.add_parser("delete", help="remove documents by id")
    p.add_argument("doc_ids", nargs="+")
    p.set_defaults(func=cmd_delete)

    p = sub.add_parser("stats", help="counts, model and sizes of the index")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_stats)

    p = sub.add_parser("chunks", help="a document's passages with offsets")
    p.add_argument("doc_id")
    p.set_defaults(func=cmd_chunks)

    p = sub.add_parser("search", help="ranked passages for a query")
    p.add_argument("query")
    p.add_argument("-k", "--top-k", type=int, default=5)
    p.add_argument("--mode", choices=["hybrid", "dense", "lexical"], default=None)
    p.add_argument("--json", action="store_true")
    _add_filters(p)
    p.set_defaults(func=cmd_search)

    p = sub.add_parser("ask", help="answer a question with citations")
    p.add_argument("question")
    p.add_argument("-k", "--top-k", type=int, default=5)
    p.add_argument("--json", action="store_true")
    _add_filters(p)
    p.set_defaults(func=cmd_ask)

    p = sub.add_parser("eval", help="retrieval/answer metrics on a QA file or BEIR folder")
    p.add_argument("path", help="a QA .jsonl (like eval/data/dev/dev.jsonl) or a BEIR folder")
    p.add_argument("--split", choices=["dev", "test"], default=None)
    p.add_argument("--out", type=Path, default=None, help="write the JSON report here")
    p.add_argument(
        "--modes", default="dense,lexical,hybrid", help="retrieval modes to compare (csv)"
    )
    p.add_argument(
        "--index-dir",
        type=Path,
        default=None,
        help="BEIR: keep the index here (default: a temporary one); a later run reuses it",
    )
    p.add_argument(
        "--every", type=int, default=1, help="BEIR: evaluate one question in N (a fixed sample)"
    )
    p.set_defaults(func=cmd_eval)

    p = sub.add_parser("tune", help="fit the answer sentence selector on the dev data")
    p.add_argument("--xquad", default="eval/data/xquad-de", help="BEIR folder with answers.jsonl")
    p.add_argument(
        "--qa", default="eval/data/dev/dev.jsonl", help="QA file over the index (empty: none)"
    )
    p.add_argument("--index-dir", default="vectors/xquad", help="index for the XQuAD corpus")
    p.add_argument("--out", default="rag/answer/selector.json", help="where to write the weights")
    p.add_argument("--ablation", action="store_true", help="also refit without each feature")
    p.add_argument("--every", type=int, default=1, help="use one dev question in N")
    p.set_defaults(func=cmd_tune)

    p = sub.add_parser("serve", help="serve the HTTP API and chat page")
    p.add_argument("--host", default=None)
    p.add_argument("--port", type=int, default=None)
    p.add_argument(
        "--workers",
        type=int,
        default=None,
        help="API processes (default RAG_WORKERS or 1); above 1 needs RAG_DATABASE_URL",
    )
    p.add_argument(
        "--ingest",
        nargs="+",
        metavar="PATH",
        help="first bring the index up to date with these files/folders (skipped if fresh)",
    )
    p.set_defaults(func=cmd_serve)

    p = sub.add_parser("db", help="manage the PostgreSQL database (RAG_DATABASE_URL)")
    dsub = p.add_subparsers(dest="db_command", required=True)
    dp = dsub.add_parser("upgrade", help="create or migrate the schema")
    dp.set_defaults(func=cmd_db_upgrade)
    dp = dsub.add_parser("import", help="copy an embedded index into the database (no embedding)")
    dp.add_argument("index_dir", help="folder of the embedded index (RAG_INDEX_DIR)")
    dp.set_defaults(func=cmd_db_import)

    p = sub.add_parser("models", help="manage embedding models")
    msub = p.add_subparsers(dest="models_command", required=True)
    mp = msub.add_parser("prepare", help="convert the bundled offline model (once)")
    mp.add_argument("--force", action="store_true", help="convert again")
    mp.set_defaults(func=cmd_models_prepare)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=logging.INFO if args.verbose else logging.WARNING,
        format="%(levelname)s %(name)s: %(message)s",
    )
    try:
        code: int = args.func(args, get_settings())
    except RagError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_ERROR
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    return code


if __name__ == "__main__":
    sys.exit(main())
