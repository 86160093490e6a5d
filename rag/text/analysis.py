"""German text analysis for lexical search: tokens, folding, stop words, stems, compounds.

Indexing runs ``tokenize -> lower-case + umlaut/ß folding -> stop words -> compound
seams -> Snowball German stems``. A compound yields its own stem first, so exact matches
stay strongest, then the stems of its parts: "Präsidentschaftswahlen" gives
``prasidentschaftswahl``, ``prasidentschaft`` and ``wahl``.

Compound splitting needs no dictionary. Documents are cut only at seams that German
spells the same way everywhere: a derivational suffix followed by the linking -s-
("Wirtschaft|s|politik", "Regierung|s|chef"). That keeps a text's terms a function of the
text alone, so an incremental index stays consistent. Queries may go further: a query word
the index has never seen is split into words the index does know (``split_compound``),
which lets "Migrantenanteil" find "Anteil der Migranten".

Queries also pass through ``detect_language``: a question in English (or any language but
German) keeps only the tokens that can match German text literally (names, numbers,
acronyms), because a German stemmer turns ordinary foreign words into junk matches.
"""

from __future__ import annotations

import functools
import math
import re
import threading
import unicodedata
from collections.abc import Callable, Collection, Mapping, Sequence

import Stemmer

from rag.text.language import identify


def _word_list(text: str) -> frozenset[str]:
    return frozenset(text.split())


# Snowball's German stop list (BSD licence).
_GERMAN_STOPWORDS = _word_list(
    """
    aber alle allem allen aller alles als also am an ander andere anderem anderen anderer
    anderes anderm andern anderr anders auch auf aus bei bin bis bist da damit dann der den
    des dem die das dass daß derselbe derselben denselben desselben demselben dieselbe
    dieselben dasselbe dazu dein deine deinem deinen deiner deines denn derer dessen dich dir
    du dies diese diesem diesen dieser dieses doch dort durch ein eine einem einen einer eines
    einig einige einigem einigen einiger einiges einmal er ihn ihm es etwas euer eure eurem
    euren eurer eures für gegen gewesen hab habe haben hat hatte hatten hier hin hinter ich
    mich mir ihr ihre ihrem ihren ihrer ihres euch im in indem ins ist jede jedem jeden jeder
    jedes jene jenem jenen jener jenes jetzt kann kein keine keinem keinen keiner keines
    können könnte machen man manche manchem manchen mancher manches mein meine meinem meinen
    meiner meines mit muss musste nach nicht nichts noch nun nur ob oder ohne sehr sein seine
    seinem seinen seiner seines selbst sich sie ihnen sind so solche solchem solchen solcher
    solches soll sollte sondern sonst über um und uns unsere unserem unseren unser unseres
    unter viel vom von vor während war waren warst was weg weil weiter welche welchem welchen
    welcher welches wenn werde werden wie wieder will wir wird wirst wo wollen wollte würde
    würden zu zum zur zwar zwischen
    """
)

# Snowball's English stop list (BSD licence) without contractions, plus question words; a
# query also drops the imperatives that open questions ("Name the ...", "List all ...").
_ENGLISH_STOPWORDS = _word_list(
    """
    i me my myself we our ours ourselves you your yours yourself yourselves he him his himself
    she her hers herself it its itself they them their theirs themselves what which who whom
    this that these those am is are was were be been being have has had having do does did
    doing would should could ought a an the and but if or because as until while of at by for
    with about against between into through during before after above below to from up down in
    out on off over under again further then once here there when where why how all any both
    each few more most other some such no nor not only own same so than too very can will just
    don now many much whose s t since
    """
)
_ENGLISH_QUERY_STOPWORDS = _ENGLISH_STOPWORDS | _word_list(
    "name list describe explain tell give show summarize summarise compare please"
)

# Only words that are stop words in one language tell the languages apart ("in", "so",
# "was" are both); German question words count for German as well.
_ENGLISH_MARKERS = _ENGLISH_STOPWORDS - _GERMAN_STOPWORDS
_GERMAN_MARKERS = (
    _GERMAN_STOPWORDS
    | _word_list("wer wen wem wessen wann warum wieso weshalb woher wohin womit wofür")
) - _ENGLISH_STOPWORDS

# A number with thousands separators ("2.000", "1,500,000") is one token without them;
# anything else is a run of letters or digits (no underscore: wiki titles use it as space).
_TOKEN_RE = re.compile(r"\d{1,3}(?:[.,]\d{3})+(?![.,]?\d)|[^\W_]+")
_SEPARATORS_RE = re.compile(r"[.,]")

# Derivational suffixes that take the linking -s- in compounds: "Wirtschaft|s|politik",
# "Regierung|s|chef", "Sicherheit|s|rat", "Religion|s|freiheit", "Universität|s|klinik".
# After them an -s- is (almost) always a compound seam, so cutting there needs no lexicon.
_SEAM_RE = re.compile(
    r"(?<=[^\W\d_]{2})(?:ung|heit|keit|schaft|ion|t[aä]t|ling|tum)s(?=[^\W\d_]{4})"
)

# Linking elements ("Fugenelemente") that may join a modifier to the next part.
_LINKS = ("s", "es", "n", "en", "er", "e", "ens")

ANALYSIS_VERSION = 1  # bump whenever ``analyze`` changes its output: stored postings go stale
MIN_COMPOUND_LENGTH = 8  # shorter words are rarely compounds worth splitting
MIN_PART_LENGTH = 4  # shorter "parts" are mostly noise ("san" in "Aufzug|s|anlage")
MAX_SPLIT_LENGTH = 48  # longer unknown query words are not split against the vocabulary
MAX_SPLIT_WORDS = 8  # nor more than this many per query

Vocabulary = Callable[[Collection[str]], Mapping[str, int]]
"""Looks up terms (stems) in an index: returns the document frequency of those it holds."""


def fold(word: str) -> str:
    """Lower-case and strip diacritics: ä->a, ß->ss, é->e (as Snowball German stems them)."""
    if word.isascii():
        return word.lower()
    return _fold_unicode(word)


@functools.lru_cache(maxsize=65536)
def _fold_unicode(word: str) -> str:
    decomposed = unicodedata.normalize("NFKD", word.casefold())
    return "".join(ch for ch in decomposed if not unicodedata.combining(ch))


_fold = fold  # GermanAnalyzer's ``fold`` argument shadows the function in ``__init__``


def tokenize(text: str) -> list[str]:
    """Words and numbers of ``text`` in order, original case kept."""
    tokens = []
    for match in _TOKEN_RE.finditer(unicodedata.normalize("NFKC", text)):
        token = match.group()
        if token[0].isdigit() and not token.isalnum():
            token = _SEPARATORS_RE.sub("", token)
        tokens.append(token)
    return tokens


def stopword_language(text: str) -> str | None:
    """German or English ("de", "en") by which stop words ``text`` holds more of; None on a tie."""
    english = german = 0
    for token in tokenize(text):
        word = token.lower()
        if word in _ENGLISH_MARKERS:
            english += 1
        elif word in _GERMAN_MARKERS or any(ch in "äöüß" for ch in word):
            german += 1
    return "en" if english > german else "de" if german > english else None


# py3langid's probability below which text counts as no evidence, so German as ties are:
# one-word page fragments ("Quellen", "Kommentar (0)") score 0.13-0.19 for some language,
# names and numbers ("Putin Trump 2025") 0.03, a short Italian question 0.45.
NO_LANGUAGE = 0.2


@functools.lru_cache(maxsize=8192)
def detect_language(text: str) -> str:
    """The language of ``text`` as an ISO 639 code ("de", "en", "es", "ru", ...).

    py3langid (``rag.text.language.identify``) guesses any language. Where German or English
    is one of its two likeliest, their stop words decide: on the XQuAD dev questions they are
    never wrong where it errs on short ones ("What did Lady Gaga sing?": Javanese, English
    second; "Wann erschien ...?": Luxembourgish, German second). Text without evidence
    either way is German. Quoted titles do not count: 'Wann erschien "The Life of Pablo"?'
    is German.
    """
    from rag.text.lexicon import quoted_pattern  # lexicon builds on fold() defined here

    unquoted = quoted_pattern().sub(" ", text)
    if not unquoted.strip():
        unquoted = text
    vote = stopword_language(unquoted)
    likeliest = identify(unquoted)
    if vote is not None and vote in {lang for lang, _ in likeliest}:
        return vote
    language, probability = likeliest[0]
    if probability < NO_LANGUAGE or language == "zxx":
        return "de"
    return language


def seam_split(word: str) -> list[str]:
    """Cut a lower-case word at suffix+s seams: "wirtschaftspolitik" -> wirtschaft, politik."""
    parts = []
    start = 0
    for match in _SEAM_RE.finditer(word):
        parts.append(word[start : match.end() - 1])
        start = match.end()
    parts.append(word[start:])
    return parts


def candidate_parts(word: str) -> set[str]:
    """Every substring that ``split_compound`` may ask about (links already removed)."""
    out = set()
    n = len(word)
    for i in range(0, n - MIN_PART_LENGTH + 1):
        out.add(word[i:])
        for j in range(i + MIN_PART_LENGTH, n - MIN_PART_LENGTH + 1):
            piece = word[i:j]
            out.add(piece)
            out.update(
                piece[: -len(link)]
                for link in _LINKS
                if piece.endswith(link) and len(piece) - len(link) >= MIN_PART_LENGTH
            )
    return out


def split_compound(word: str, frequency: Callable[[str], int]) -> list[str]:
    """Best split of a word into known words, after Koehn & Knight (2003).

    ``frequency`` says how common a (surface) part is; 0 means unknown. A split is
    ``modifier + link + head``, where the modifier without its linking element is known and
    the head is known or splits again. The whole word competes with its own frequency and
    the highest geometric mean of the parts' frequencies wins, so a common word that merely
    contains other words stays whole. Returns ``[word]`` when nothing better exists.
    """
    memo: dict[str, tuple[float, list[str]]] = {}

    def best(rest: str) -> tuple[float, list[str]]:
        # (mean log frequency, parts); -1 marks a remainder that is neither known nor split
        if rest in memo:
            return memo[rest]
        whole = frequency(rest)
        result: tuple[float, list[str]] = (math.log(whole) if whole > 0 else -1.0, [rest])
        for cut in range(MIN_PART_LENGTH, len(rest) - MIN_PART_LENGTH + 1):
            head_score, head_parts = best(rest[cut:])
            if head_score < 0:
                continue
            prefix = rest[:cut]
            for modifier in (prefix, *(prefix[: -len(x)] for x in _LINKS if prefix.endswith(x))):
                count = frequency(modifier) if len(modifier) >= MIN_PART_LENGTH else 0
                if count <= 0:
                    continue
                n = len(head_parts) + 1
                score = (math.log(count) + head_score * (n - 1)) / n
                if score > result[0]:
                    result = (score, [modifier, *head_parts])
        memo[rest] = result
        return result

    return best(word)[1]


class GermanAnalyzer:
    """Turns text into index terms: folded, stop-word-free Snowball German stems and parts."""

    def __init__(
        self,
        *,
        stopwords: bool = True,
        stem: bool = True,
        fold: bool = True,
        decompound: bool = True,
    ) -> None:
        self.stopwords = stopwords
        self.stem = stem
        self.fold = fold
        self.decompound = decompound
        self._stemmer = Stemmer.Stemmer("german")
        self._lock = threading.Lock()
        self._stop = _GERMAN_STOPWORDS | {_fold(w) for w in _GERMAN_STOPWORDS}

    def normalize(self, token: str) -> str:
        """Case (and with ``fold``, diacritic) normalisation of one token."""
        return _fold(token) if self.fold else token.lower()

    def words(self, text: str) -> list[str]:
        """Normalised tokens of ``text`` without stop words (not yet stemmed)."""
        words = map(self.normalize, tokenize(text))
        return [w for w in words if w not in self._stop] if self.stopwords else list(words)

    def query_words(self, text: str) -> list[str]:
        """Like ``words``, but a question not in German keeps only literally matchable tokens.

        Kept are tokens with a digit and capitalised tokens that are no English stop word:
        names, acronyms, numbers and dates, which German text spells the same way.
        """
        if detect_language(text) == "de":
            return self.words(text)
        kept = [
            self.normalize(token)
            for token in tokenize(text)
            if token.lower() not in _ENGLISH_QUERY_STOPWORDS
            and (token[0].isupper() or any(ch.isdigit() for ch in token))
        ]
        return [w for w in kept if w not in self._stop] if self.stopwords else kept

    def stems(self, words: Sequence[str]) -> list[str]:
        """Snowball German stems (or the words themselves with ``stem=False``)."""
        if not self.stem:
            return list(words)
        with self._lock:  # a Snowball stemmer must not be used by two threads at once
            return list(self._stemmer.stemWords(words))

    def terms(self, words: Sequence[str], vocabulary: Vocabulary | None = None) -> list[str]:
        """Terms of normalised words: each word's stem, then the stems of its parts.

        Without ``vocabulary`` a word is cut at suffix+s seams only (what indexing does).
        With it, a word whose stem the vocabulary does not hold is also split into parts
        it does hold; a known word is treated exactly as at indexing time.
        """
        stems = self.stems(words)
        pieces = [self._seam_pieces(w) for w in words]
        if vocabulary is not None and self.decompound:
            pieces = self._split_unknown(words, stems, pieces, vocabulary)
        out: list[str] = []
        for stem, parts in zip(stems, pieces, strict=True):
            out.append(stem)
            if len(parts) > 1:
                out.extend(self.stems(parts))
        return out

    def analyze(self, text: str) -> list[str]:
        """Terms for indexing ``text``."""
        return self.terms(self.words(text))

    def analyze_query(self, text: str) -> list[str]:
        """Terms for a query (language-aware; compounds cut at seams only).

        ``LexicalIndex.search`` goes further and also splits words it has never indexed.
        """
        return self.terms(self.query_words(text))

    def _seam_pieces(self, word: str) -> list[str]:
        if self.decompound and len(word) >= MIN_COMPOUND_LENGTH and word.isalpha():
            return seam_split(word)
        return [word]

    def _split_unknown(
        self,
        words: Sequence[str],
        stems: Sequence[str],
        pieces: list[list[str]],
        vocabulary: Vocabulary,
    ) -> list[list[str]]:
        """Split the pieces of words unknown to ``vocabulary`` into pieces it knows."""
        long_words = {
            i for i, w in enumerate(words) if len(w) >= MIN_COMPOUND_LENGTH and w.isalpha()
        }
        if not long_words:
            return pieces
        all_pieces = sorted({p for i in long_words for p in pieces[i]})
        piece_stem = dict(zip(all_pieces, self.stems(all_pieces), strict=True))
        known = vocabulary({stems[i] for i in long_words} | set(piece_stem.values()))
        unknown_pieces = {
            p
            for i in long_words
            if stems[i] not in known
            for p in pieces[i]
            if MIN_COMPOUND_LENGTH <= len(p) <= MAX_SPLIT_LENGTH and piece_stem[p] not in known
        }
        # The work grows with the square of a word's length: bound it for hostile queries.
        unknown_pieces = set(sorted(unknown_pieces)[:MAX_SPLIT_WORDS])
        if not unknown_pieces:
            return pieces
        candidates = sorted(set().union(*(candidate_parts(p) for p in unknown_pieces)))
        stem_of = dict(zip(candidates, self.stems(candidates), strict=True))
        counts = vocabulary(set(stem_of.values()))

        def frequency(part: str) -> int:
            return counts.get(stem_of.get(part, ""), 0)

        split = {p: split_compound(p, frequency) for p in unknown_pieces}
        out = []
        for i, parts in enumerate(pieces):
            if i in long_words and stems[i] not in known:
                parts = [q for p in parts for q in split.get(p, [p])]
            out.append(parts)
        return out
