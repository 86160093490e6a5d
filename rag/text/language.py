"""Language identification for any language, and the English names of languages.

``identify`` is py3langid (Lui & Baldwin's langid.py, BSD-3-Clause): a naive Bayes model
over byte n-grams for 97 languages that ships inside the wheel, so nothing is downloaded.
It loads on first use (about 0.5 s) and then takes well under 0.1 ms for a sentence.
``rag.text.analysis.detect_language`` combines it with the German/English stop words.
"""

from __future__ import annotations

import functools
import threading
from typing import Any

__all__ = ["identify", "language_name"]

_lock = threading.Lock()


@functools.cache
def _load() -> Any:
    from py3langid.langid import MODEL_FILE, LanguageIdentifier

    return LanguageIdentifier.from_model_file(MODEL_FILE, norm_probs=True)


def _identifier() -> Any:
    with _lock:  # two threads' first questions load the model once
        return _load()


def identify(text: str, n: int = 2) -> list[tuple[str, float]]:
    """The ``n`` likeliest languages of ``text`` (ISO 639 codes) with their probabilities.

    Text without letters is ``[("zxx", 0.0)]``; text without evidence gets languages at a
    probability near 1/97: the caller decides what no evidence means.
    """
    if not any(ch.isalpha() for ch in text):
        return [("zxx", 0.0)]
    return [(str(lang), float(p)) for lang, p in _identifier().rank(text)[:n]]


# English names of the languages most questions come in; others are named by their code.
_NAMES = {
    "ar": "Arabic",
    "bg": "Bulgarian",
    "cs": "Czech",
    "da": "Danish",
    "de": "German",
    "el": "Greek",
    "en": "English",
    "es": "Spanish",
    "fa": "Persian",
    "fi": "Finnish",
    "fr": "French",
    "he": "Hebrew",
    "hi": "Hindi",
    "hr": "Croatian",
    "hu": "Hungarian",
    "id": "Indonesian",
    "it": "Italian",
    "ja": "Japanese",
    "ko": "Korean",
    "nl": "Dutch",
    "no": "Norwegian",
    "pl": "Polish",
    "pt": "Portuguese",
    "ro": "Romanian",
    "ru": "Russian",
    "sk": "Slovak",
    "sr": "Serbian",
    "sv": "Swedish",
    "th": "Thai",
    "tr": "Turkish",
    "uk": "Ukrainian",
    "vi": "Vietnamese",
    "zh": "Chinese",
}


def language_name(code: str) -> str:
    """The English name of a language code ("es" -> "Spanish"); unknown codes say what they are."""
    return _NAMES.get(code, f"the language with ISO 639 code '{code}'")
