"""Property-based checks of the live API against its own OpenAPI document (schemathesis).

Bounded: a few examples per operation on a FakeEmbedder-backed service, so it runs in
seconds. Checks: no 5xx, status codes, content types, headers and bodies match the schema.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from schemathesis.config import SchemathesisConfig
from schemathesis.config._checks import NEGATIVE_DATA_REJECTION_EXPECTED_STATUSES

from api.main import create_app
from api.schemas import clean_text
from rag.config import Settings
from rag.errors import IngestError
from rag.ingest.loaders import document_from_text
from rag.service import RagService
from rag.testing import FakeEmbedder


def _openapi() -> dict[str, Any]:
    # An open service (empty index) on a FakeEmbedder: the document then states the
    # embedding model's dimension, which ``/v1/embeddings`` insists on.
    directory = Path(tempfile.mkdtemp(prefix="rag-openapi-"))
    service = RagService(directory, FakeEmbedder()).open()
    try:
        return create_app(service, Settings(_env_file=None, api_keys=[])).openapi()  # type: ignore[call-arg]
    finally:
        service.close()
        shutil.rmtree(directory, ignore_errors=True)


# Uploads are text files (the schema's ``encoding`` names their content types): this is what
# such a file holds: no NUL bytes, and a word (empty files are refused with 422).
_TEXT = st.text(st.characters(blacklist_characters="\x00", blacklist_categories=["Cs"]))
_TEXT_FILE = _TEXT.map(lambda text: f"Text {text}".encode())
schemathesis.openapi.media_type("text/plain", _TEXT_FILE, aliases=["text/markdown"])
# An HTML page needs an article for the extractor to keep anything.
_ARTICLE = "<html><body><article><h1>Titel</h1><p>Ein Satz eines Artikels über {}.</p></article>"
schemathesis.openapi.media_type("text/html", _TEXT.map(lambda text: _ARTICLE.format(text).encode()))
schemathesis.openapi.media_type(
    "application/x-ndjson",
    st.integers(0, 10**6).map(lambda i: f'{{"id": "d{i}", "text": "Text {i}"}}'.encode()),
    aliases=["application/jsonl"],
)


# A JSON document's text must hold article text; the schema says so in words (a JSON schema
# cannot state what page chrome is). Generated documents are kept to those the server's own
# check calls articles, so "valid by the schema and the rule" must mean 201.
def _is_article(item: object) -> bool:
    if not isinstance(item, dict) or not isinstance(item.get("text"), str):
        return True  # not a well-formed document: the schema decides
    try:
        document_from_text("check", clean_text(item["text"]))
    except IngestError:
        return False
    return True


@schemathesis.hook.apply_to(path="/v1/documents", method="POST")
def filter_body(ctx: Any, body: Any) -> bool:
    return all(_is_article(item) for item in (body if isinstance(body, list) else [body]))


# A schema-violating body may also be too large: 413 is a rejection as good as 422.
CONFIG = SchemathesisConfig.from_dict(
    {
        "checks": {
            "negative_data_rejection": {
                "expected-statuses": [*NEGATIVE_DATA_REJECTION_EXPECTED_STATUSES, "413"]
            }
        }
    }
)
# Built at import: schemathesis' fixture-based loader does not work with pytest 9.
schema = schemathesis.openapi.from_dict(_openapi(), config=CONFIG)


@pytest.fixture(scope="module")
def schemathesis_url(
    serve_api: Any, tmp_path_factory: Any, api_corpus: list[Any], api_settings: Any
) -> Iterator[str]:
    # A service of its own: the generated requests add and delete documents.
    service = RagService(tmp_path_factory.mktemp("api-schemathesis"), FakeEmbedder()).open()
    service.add_documents(api_corpus)
    app = create_app(service, api_settings(max_body_bytes=200_000))
    with serve_api(app) as base_url:
        yield base_url
    service.close()


# How many generated cases each operation gets (SCHEMATHESIS_EXAMPLES=200 for a longer run).
EXAMPLES = int(os.environ.get("SCHEMATHESIS_EXAMPLES", "6"))


@pytest.mark.slow
@schema.parametrize()
@settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=list(HealthCheck))
def test_api_matches_its_schema(case: Any, schemathesis_url: str) -> None:
    case.call_and_validate(base_url=schemathesis_url)
