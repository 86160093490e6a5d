"""How well does ``detect_language`` tell the language of questions and sentences?

``python -m bench.languages`` prints, for the XQuAD dev questions (German and English), the
German sentences of the XQuAD corpus and a few questions in Spanish, French, Italian and
Russian (XQuAD questions and the demo corpus' topic, translated): the share guessed right
by the German/English stop words alone (ties German: the rule before py3langid), by
py3langid alone and by ``detect_language``; how often ``detect_language`` agrees with the
stop-word rule on XQuAD and on the demo corpus (where it does, the selector's features do
not change), and the time per call without the cache.
"""

# ruff: noqa: RUF001  (Russian questions: Cyrillic letters that look Latin)

from __future__ import annotations

import json
import time
from collections.abc import Callable, Sequence
from pathlib import Path

from rag.ingest.loaders import load_documents
from rag.text.analysis import detect_language, stopword_language
from rag.text.language import identify
from rag.text.sentences import split_sentences

ROOT = Path(__file__).resolve().parents[1]
XQUAD = ROOT / "eval" / "data" / "xquad-de"
OTHER_LANGUAGES = {
    "es": [
        "¿Dónde se reunieron Trump y Putin en julio de 2018?",
        "¿Cuántos habitantes tiene Alemania?",
        "¿Quién ganó el Super Bowl 50?",
        "¿Cuántos puntos concedió la defensa de los Panthers?",
        "¿En qué año murió Nikola Tesla?",
        "¿Qué dijo Putin sobre Ucrania?",
        "¿Cuál es la capital de Francia?",
        "¿Por qué cambió la relación entre Washington y Moscú?",
    ],
    "fr": [
        "Où Trump et Poutine se sont-ils rencontrés en juillet 2018 ?",
        "Qui a gagné le Super Bowl 50 ?",
        "Combien d'habitants compte l'Allemagne ?",
        "En quelle année Nikola Tesla est-il mort ?",
        "Qu'a dit Poutine à propos de l'Ukraine ?",
        "Quelle est la capitale de la France ?",
        "Pourquoi la relation entre Washington et Moscou a-t-elle changé ?",
        "Combien de points la défense des Panthers a-t-elle concédés ?",
    ],
    "it": [
        "Dove si sono incontrati Trump e Putin nel luglio 2018?",
        "Chi ha vinto il Super Bowl 50?",
        "Quanti abitanti ha la Germania?",
        "In che anno è morto Nikola Tesla?",
        "Che cosa ha detto Putin sull'Ucraina?",
        "Qual è la capitale della Francia?",
        "Perché è cambiato il rapporto tra Washington e Mosca?",
        "Quanti punti ha concesso la difesa dei Panthers?",
    ],
    "ru": [
        "Где встретились Трамп и Путин в июле 2018 года?",
        "Кто выиграл Суперкубок?",
        "Сколько жителей в Германии?",
        "В каком году умер Никола Тесла?",
        "Что сказал Путин об Украине?",
        "Какая столица у Франции?",
        "Почему изменились отношения между Вашингтоном и Москвой?",
        "Сколько очков пропустила защита «Пантерз»?",
    ],
}


def _stopwords(text: str) -> str:
    return stopword_language(text) or "de"


def _py3langid(text: str) -> str:
    return identify(text)[0][0]


GUESSERS: dict[str, Callable[[str], str]] = {
    "stop words": _stopwords,
    "py3langid": _py3langid,
    "detect_language": detect_language.__wrapped__,
}


def _sentences(texts: Sequence[str]) -> list[str]:
    return [t[a:b] for t in texts for a, b in split_sentences(t)]


def _sets() -> dict[str, list[tuple[str, str]]]:
    dev = set(json.loads((XQUAD / "splits.json").read_text("utf-8"))["dev"])
    queries = [json.loads(x) for x in (XQUAD / "queries.jsonl").read_text("utf-8").splitlines()]
    corpus_lines = (XQUAD / "corpus.jsonl").read_text("utf-8").splitlines()
    corpus = [json.loads(x)["text"] for x in corpus_lines]
    sets = {
        f"XQuAD dev questions, {lang}": [
            (q["text"], lang) for q in queries if q["id"] in dev and q["lang"] == lang
        ]
        for lang in ("de", "en")
    }
    sets["XQuAD corpus sentences, de"] = [(s, "de") for s in _sentences(corpus)]
    for lang, texts in OTHER_LANGUAGES.items():
        sets[f"questions, {lang}"] = [(t, lang) for t in texts]
    return sets


def main() -> None:
    sets = _sets()
    print("| texts | n | " + " | ".join(GUESSERS) + " |")
    print("|---|---:|" + "---:|" * len(GUESSERS))
    for name, items in sets.items():
        cells = [
            f"{sum(guess(t) == lang for t, lang in items) / len(items):.3f}"
            for guess in GUESSERS.values()
        ]
        print(f"| {name} | {len(items)} | " + " | ".join(cells) + " |")
    demo = [d.text for d in load_documents([ROOT / "corpus"]).documents]
    xquad = [t for name, items in sets.items() if "XQuAD" in name for t, _ in items]
    new = GUESSERS["detect_language"]
    for name, texts in (("XQuAD", xquad), ("demo corpus sentences", _sentences(demo))):
        changed = [t for t in texts if new(t) != _stopwords(t)]
        print(
            f"\n{name}: detect_language agrees with the stop words on "
            f"{1 - len(changed) / len(texts):.4f} of {len(texts)}"
        )
        for t in changed:
            print(f"  {_stopwords(t)} -> {new(t)}: {' '.join(t.split())[:90]}")
    texts = [t for items in sets.values() for t, _ in items]
    for name, guess in GUESSERS.items():
        start = time.perf_counter()
        for t in texts:
            guess(t)
        per_call = (time.perf_counter() - start) / len(texts) * 1e6
        print(f"{name}: {per_call:.0f} µs per call ({len(texts)} texts, no cache)")


if __name__ == "__main__":
    main()
