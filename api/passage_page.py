"""Server-rendered HTML of a passage in its document, the cited quote highlighted.

Everything from the index is escaped; the only script is a constant (allowed by its hash
in the page's Content-Security-Policy) that scrolls the highlight into view.
"""

from __future__ import annotations

import base64
import hashlib
import itertools
from html import escape
from urllib.parse import urlsplit

from rag.types import Chunk, Document

_SCRIPT = (
    "(document.getElementById('quote')||document.getElementById('passage'))"
    ".scrollIntoView({block:'center'});"
)
_SCRIPT_HASH = base64.b64encode(hashlib.sha256(_SCRIPT.encode()).digest()).decode()

CSP = (
    "default-src 'none'; style-src 'unsafe-inline'; "
    f"script-src 'sha256-{_SCRIPT_HASH}'; base-uri 'none'; form-action 'none'"
)

_STYLE = """
body{font:17px/1.6 system-ui,sans-serif;max-width:46rem;margin:2rem auto;padding:0 1rem;
color:#1d2330;background:#fbfbf8}
h1{font-size:1.4rem;line-height:1.3;margin-bottom:.3rem}
.meta{color:#5b6475;font-size:.9rem;margin-top:0}
article{white-space:pre-wrap;overflow-wrap:anywhere}
.passage{background:#fff3c4;border-radius:3px;box-shadow:0 0 0 3px #fff3c4}
mark{background:#ffd54a;color:inherit;border-radius:2px;padding:0 1px}
"""


def safe_href(url: str | None) -> str | None:
    """Only http(s) links leave this page (no ``javascript:`` from document metadata)."""
    if not url:
        return None
    return url if urlsplit(url).scheme.lower() in ("http", "https") else None


def _segments(text: str, passage: tuple[int, int], quote: tuple[int, int] | None) -> str:
    """The text cut at the highlight boundaries, each piece escaped and wrapped."""
    cuts = {0, len(text), *passage, *(quote or ())}
    bounds = sorted(c for c in cuts if 0 <= c <= len(text))
    parts: list[str] = []
    passage_id_done = quote_id_done = False
    for start, end in itertools.pairwise(bounds):
        if start == end:
            continue
        piece = escape(text[start:end])
        in_quote = quote is not None and quote[0] <= start and end <= quote[1]
        if in_quote:
            qid = "" if quote_id_done else ' id="quote"'
            quote_id_done = True
            piece = f"<mark{qid}>{piece}</mark>"
        if passage[0] <= start and end <= passage[1]:
            pid = "" if passage_id_done else ' id="passage"'
            passage_id_done = True
            piece = f'<span class="passage"{pid}>{piece}</span>'
        parts.append(piece)
    return "".join(parts)


def render_passage(
    document: Document, chunk: Chunk, quote: tuple[int, int] | None, *, lang: str = "de"
) -> str:
    """A standalone HTML page of ``document`` with ``chunk`` (and ``quote``) highlighted."""
    title = escape(document.title or document.doc_id)
    meta = [escape(x) for x in (document.source, document.published) if x]
    href = safe_href(document.url)
    if href:
        label = "Originalartikel" if lang == "de" else "Original article"
        meta.append(f'<a href="{escape(href)}" rel="noopener noreferrer">{label}</a>')
    meta.append(f"<code>{escape(document.doc_id)}</code>")
    body = _segments(document.text, (chunk.start, chunk.end), quote)
    return (
        f'<!doctype html><html lang="{escape(lang)}"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{title}</title><style>{_STYLE}</style></head><body>"
        f'<header><h1>{title}</h1><p class="meta">{" · ".join(meta)}</p></header>'
        f"<article>{body}</article><script>{_SCRIPT}</script></body></html>"
    )
