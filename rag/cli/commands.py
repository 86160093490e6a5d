"""The ``rag`` subcommands but ``serve``: ingest, inspect, search, ask, eval, tune, db, models."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Iterator
from pathlib import Path

from rag.config import Settings
from rag.errors import ConfigError
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
            if args.log_commits and p.committed_doc_ids:
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
            precision=settings.embedding_precision,
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
        cache=Path(args.cache) if args.cache else None,
    )


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
