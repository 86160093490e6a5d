"""Property-based checks of the live API against its own OpenAPI document (schemathesis).

Bounded: a few examples per operation on a FakeEmbedder-backed service, so it runs in
seconds. Checks: no 5xx, status codes, content types, headers and bodies match the schema.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.checks import positive_data_acceptance
from schemathesis.config import SchemathesisConfig
from schemathesis.config._checks import NEGATIVE_DATA_REJECTION_EXPECTED_STATUSES

from api.main import create_app
from rag.config import Settings
from rag.service import RagService
from rag.testing import FakeEmbedder


def _openapi() -> dict[str, Any]:
    # The document does not depend on the index: an unopened service is enough to build it.
    service = RagService(Path("unused"), FakeEmbedder())
    app = create_app(service, Settings(_env_file=None, api_keys=[]))  # type: ignore[call-arg]
    return app.openapi()


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


# Operations with rules a JSON schema cannot state, answered with 422 and a message: the last
# chat message must come from the user, date ranges must be ordered, uploads must be text
# files, a quote needs start < end within the document, ``dimensions`` must be the model's.
# For them "valid by the schema" does not imply 2xx, so that one check is skipped there.
SEMANTIC_RULES = {
    ("POST", "/v1/ask"),
    ("POST", "/v1/search"),
    ("POST", "/v1/documents"),
    ("POST", "/v1/chat/completions"),
    ("POST", "/v1/embeddings"),
    ("GET", "/v1/passages/{chunk_id}"),
}


@pytest.mark.slow
@schema.parametrize()
@settings(max_examples=6, deadline=None, suppress_health_check=list(HealthCheck))
def test_api_matches_its_schema(case: Any, schemathesis_url: str) -> None:
    excluded = []
    if (case.operation.method.upper(), case.operation.path) in SEMANTIC_RULES:
        excluded.append(positive_data_acceptance)
    case.call_and_validate(base_url=schemathesis_url, excluded_checks=excluded)
