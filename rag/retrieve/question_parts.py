"""The parts of a multi-part question, for retrieval and extractive answers alike.

"Wie ging Trump mit Selenskyj um - nach seinem Telefonat … und bei ihrem Treffen …?" asks
two things; the passages for the second part rank far below the first in a search for the
whole question. Each part is searched (``rag.retrieve.retriever``) and answered
(``rag.answer.extractive``) on its own as well.
"""

from __future__ import annotations

import re

__all__ = ["question_parts"]

_PART_SPLIT = re.compile(
    r"\s[\u2013\u2014-]\s|;\s*|,\s*(?:und|and)\s+(?=(?:wie|was|wer|wo|wann|welche\w*|warum|"
    r"what|how|who|where|when|which|why)\b)",
    re.IGNORECASE,
)
MIN_PART_WORDS = 3


def question_parts(question: str) -> list[str]:
    """The parts of a multi-part question ("Wie …, und was …?", "Wie … - nach …?").

    A question with one part (or parts too short to stand alone) gives ``[]``.
    """
    parts = [p.strip(" ,?") for p in _PART_SPLIT.split(question)]
    parts = [p for p in parts if len(p.split()) >= MIN_PART_WORDS]
    return parts if len(parts) > 1 else []
