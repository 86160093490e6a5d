"""Follow-up questions ("Und wann war das?") become standalone questions before retrieval.

With a chat model the model rewrites the question. Without one (or when it fails) a
deterministic rule applies: a question that is short or leans on a pronoun ("das",
"dies", "er", "sie", "it", "that" …) gets the salient words of the last user turn put
in front, e.g. "Trump Putin Telefonat März 2025: Und wann war das?". That is what
retrieval needs (names and topic words); the answer prompt still shows the original.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

from rag.answer.generation import ChatModel
from rag.answer.prompts import build_condense_messages
from rag.errors import GenerationError
from rag.text.analysis import detect_language, tokenize
from rag.types import Turn

__all__ = ["condense_question", "needs_context", "salient_terms"]

log = logging.getLogger(__name__)

# Words that point back into the conversation.
_ANAPHORS_TEXT = """
    das dies diese dieser dieses er sie es ihm ihn ihr ihnen ihre ihrer
    sein seine seiner dort damals dabei dazu darüber davon daran darauf dafür dagegen
    deren dessen derselbe dieselbe dasselbe jene jener jenes
    it its this that these those he him his she her they them their there then
"""
ANAPHORS = frozenset(_ANAPHORS_TEXT.split())

# Function words and question words of both languages: never salient.
_STOP_TEXT = """
    aber alle als also am an auch auf aus bei bin bis bitte da damit dann das dass dem den
    denn der des die dies diese diesem diesen dieser dieses doch dort du durch ein eine
    einem einen einer eines er es etwas für gab gibt hat hatte hatten hier ich ihm ihn ihr
    ihre im in ist ja jetzt kann konnte können man mehr mit nach nicht noch nun nur ob oder
    schon sehr sein seine sich sie sind so soll sollen sollte über um und uns unter viel
    vom von vor war waren was weil welche welchem welchen welcher welches wenn wer wie wird
    wo wurde wurden würde zu zum zur zwischen wann warum wieso weshalb woher wohin womit
    wofür worüber wovon wozu wieviel wieviele genau eigentlich denn mal außer sonst
    a an and are as at be been but by can could did do does for from had has have how i if
    in is it of on or so than that the their them then there these they this those to was
    were what when where which who whom whose why will with would about tell me please
    again also just more much many some any
"""
_STOP = frozenset(_STOP_TEXT.split())


def _content_words(text: str) -> list[str]:
    return [t for t in tokenize(text) if t.lower() not in _STOP and t.lower() not in ANAPHORS]


def needs_context(question: str) -> bool:
    """True for a follow-up: very few content words, or few and a pronoun pointing back."""
    words = tokenize(question)
    content = _content_words(question)
    has_anaphor = any(w.lower() in ANAPHORS for w in words)
    return len(content) <= 1 or (has_anaphor and len(content) <= 2)


def salient_terms(text: str, *, limit: int = 8) -> list[str]:
    """Content words of ``text`` in order, without repeats: names, numbers, topic nouns."""
    words = _content_words(text)
    if detect_language(text) == "de":
        # German capitalises nouns and names: those carry the topic, verbs rarely do.
        nouns = [w for w in words if w[0].isupper() or w[0].isdigit()]
        words = nouns if len(nouns) >= 2 else words
    seen: set[str] = set()
    out: list[str] = []
    for word in words:
        key = word.lower()
        if key in seen or (len(word) < 3 and not word.isdigit()):
            continue
        seen.add(key)
        out.append(word)
        if len(out) >= limit:
            break
    return out


def _deterministic(question: str, history: Sequence[Turn]) -> str:
    if not needs_context(question):
        return question
    users = [t.content for t in history if t.role == "user"]
    if not users:
        return question
    terms = salient_terms(users[-1])
    if len(terms) < 3 and len(users) > 1:
        # The last question was itself a follow-up: borrow from the one before as well.
        terms = salient_terms(users[-2] + " " + users[-1])
    asked = {w.lower() for w in tokenize(question)}
    terms = [t for t in terms if t.lower() not in asked]
    if not terms:
        return question
    return f"{' '.join(terms)}: {question.strip()}"


def _clean_model_output(text: str, question: str) -> str | None:
    """The first non-empty line without quotes or a label; ``None`` if it looks wrong."""
    for raw in text.splitlines():
        line = raw.strip()
        for label in ("Standalone question:", "Eigenständige Frage:", "Frage:", "Question:"):
            if line.lower().startswith(label.lower()):
                line = line[len(label) :]
        line = line.strip().strip("\"'„“”»«").strip()
        if line:
            if len(line) > 3 * len(question) + 300:
                return None  # an answer or a ramble, not a rewritten question
            return line
    return None


def condense_question(
    question: str, history: Sequence[Turn], chat_model: ChatModel | None = None
) -> str:
    """A standalone version of ``question`` given the conversation so far."""
    if not history or not question.strip():
        return question
    if chat_model is not None:
        try:
            rewritten = _clean_model_output(
                chat_model.complete(build_condense_messages(question, history)), question
            )
        except GenerationError as exc:
            log.warning("condensing with the LLM failed, using the rule: %s", exc)
        else:
            if rewritten:
                return rewritten
    return _deterministic(question, history)
