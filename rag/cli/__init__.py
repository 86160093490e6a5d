"""The ``rag`` command line: ingest, inspect, search, ask, evaluate, serve, prepare models."""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Sequence
from pathlib import Path

from rag.cli.commands import (
    EXIT_ERROR,
    cmd_ask,
    cmd_chunks,
    cmd_db_import,
    cmd_db_upgrade,
    cmd_delete,
    cmd_eval,
    cmd_ingest,
    cmd_models_prepare,
    cmd_search,
    cmd_stats,
    cmd_tune,
)
from rag.cli.serve import cmd_serve
from rag.config import get_settings
from rag.errors import RagError

__all__ = ["build_parser", "main"]


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
    p.add_argument(
        "--cache",
        default=None,
        help="reuse the features saved in this file by an earlier run with the same data "
        "(after a change to retrieval or features, delete it)",
    )
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
