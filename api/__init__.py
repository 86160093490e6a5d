"""The HTTP API and chat page: ``create_app()`` builds the FastAPI app around a RagService."""

from __future__ import annotations

from api.main import create_app

__all__ = ["create_app"]
