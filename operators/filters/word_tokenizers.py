"""FineWeb2's per-language word tokenizers, as datatrove's ``load_word_tokenizer(language).word_tokenize`` splits.

The language -> tokenizer table is FineWeb2's (``operators/fineweb2/tokenizer_assignment.csv``) read the way
datatrove reads it, and the tokens are those of the same libraries, with less around them: spaCy languages call
only the tokenizer (datatrove also runs a sentencizer pipe, which leaves the tokens as they are), Chinese and
Japanese call jieba and SudachiPy directly (spaCy wraps their words in a ``Doc`` without changing them), and
English is ``operators.filters.text.words``. Each library is imported when its first language is asked for.
Stanza and botok download their models at first use; without those models on disk their languages split like
unknown codes do, with spaCy's multi-language ``xx`` tokenizer (whitespace and punctuation).
"""

from __future__ import annotations

import csv
import importlib.util
import logging
import re
import warnings
from collections.abc import Callable, Iterable
from functools import cache, lru_cache
from itertools import chain
from pathlib import Path

from operators.filters.text import words

Tokenize = Callable[[str], tuple[str, ...]]

_TABLE = Path(__file__).resolve().parents[1] / "fineweb2" / "tokenizer_assignment.csv"
_ENGLISH = ("SpaCyTokenizer", "en")
_XX = ("SpaCyTokenizer", "xx")
_SUDACHI_MAX_BYTES = 40_000  # datatrove's chunk size for Japanese (SudachiPy refuses inputs over 49,149 bytes)
_CHUNK_MEMO_SIZE = 200_000  # chunks memoised per spaCy language (~200 bytes each)
_memos: list[Tokenize] = []


def word_tokenizer(language: str) -> Tokenize:
    """Word tokens (stripped, non-empty) of a text for a language code ``iso639-3_Script`` (e.g. deu_Latn,
    cmn_Hani, jpn_Jpan, tha_Thai, kor_Hang, arb_Arab, hin_Deva, vie_Latn), as datatrove's
    ``load_word_tokenizer(language).word_tokenize(text)`` gives them.

    The function returned is memoised per text (1024 texts: three filters split the same documents of a batch
    one after the other; ``clear_caches`` empties it) and is the same object on every call for a language.
    Do not mutate what it returns.
    """
    return _resolve(language)[1]


def tokenizer_name(language: str) -> str:
    """What splits ``language``: e.g. "spacy:de", "spacy:zh+jieba", "pythainlp:newmm-safe", "fast-en", or
    "spacy:xx (<why>)" where the language falls back to spaCy's multi-language tokenizer."""
    return _resolve(language)[0]


def clear_caches() -> None:
    """Empties every per-text memo (call before each batch)."""
    words.cache_clear()
    for memo in _memos:
        memo.cache_clear()


@cache
def _assignments() -> dict[str, tuple[str, str]]:
    """Language key -> (datatrove tokenizer class, its code), registered as ``load_tokenizer_assignments`` does:
    ``code3_Script`` and ``code1_Script`` (first row wins), ``code3`` and ``code1`` (last row wins)."""
    table: dict[str, tuple[str, str]] = {}
    with _TABLE.open(encoding="utf-8", newline="") as f:
        for row in csv.DictReader(f):
            if not row["type"]:
                continue
            tokenizer = (row["type"], row["tok_code"])
            # datatrove tests the flag columns for being non-empty, so "FALSE" counts as set; so do we
            code_3, code_1, script, default_script = row["code_3"], row["code_1"], row["script"], row["default_script"]
            if f"{code_3}_{script}" not in table:
                table[f"{code_3}_{script}"] = tokenizer
                if default_script:
                    table[code_3] = tokenizer
            if code_1 and row["default_code_1"] and f"{code_1}_{script}" not in table:
                table[f"{code_1}_{script}"] = tokenizer
                if default_script:
                    table[code_1] = tokenizer
    return table


@cache
def _resolve(language: str) -> tuple[str, Tokenize]:
    tokenizer = _assignments().get(language)
    if tokenizer is None:
        name, tokenize = _tokenizer(*_XX)
        return f"{name} (no assignment for {language})", tokenize
    return _tokenizer(*tokenizer)


@cache
def _tokenizer(kind: str, code: str) -> tuple[str, Tokenize]:
    """(name, memoised tokenize) for one of datatrove's tokenizer classes and its code, built once."""
    if (kind, code) == _ENGLISH:
        return "fast-en", words
    if kind == "WhitespaceTokenizer":  # datatrove splits these words with spaCy's xx
        return _tokenizer(*_XX)
    if kind == "StanzaTokenizer":
        missing = _missing_stanza(code)
        if missing:
            name, tokenize = _tokenizer(*_XX)
            return f"{name} ({missing})", tokenize
    if kind == "TibetanTokenizer":
        missing = _missing_botok()
        if missing:
            name, tokenize = _tokenizer(*_XX)
            return f"{name} ({missing})", tokenize
    name, build = _BUILDERS[kind](code)
    memo = lru_cache(maxsize=1024)(build())
    _memos.append(memo)
    return name, memo


def _stripped(tokens: Iterable[str]) -> tuple[str, ...]:
    return tuple(token for token in map(str.strip, tokens) if token)


# --- spaCy ---


def _spacy(code: str) -> tuple[str, Callable[[], Tokenize]]:
    if code == "zh":
        return "spacy:zh+jieba", _jieba
    if code == "ja":
        return "spacy:ja", _sudachi
    return f"spacy:{code}", lambda: _spacy_tokenize(code)


def _spacy_tokenize(code: str) -> Tokenize:
    import spacy
    from spacy.tokenizer import Tokenizer

    nlp = spacy.blank(code)
    # Nothing reads the lexical attributes (norm, shape, like_num ...) of the tokens, and computing them for each new
    # word is a third of spaCy's time.
    nlp.vocab.lex_attr_getters = {}
    # Only the tokenizer: Language.__call__ (and its max_length check) is never reached, so no text is too long.
    tokenizer = nlp.tokenizer
    # The memory zone (as datatrove uses) forgets the strings of each text afterwards. It also forgets the lexeme
    # of "IS_ALPHA" (string id 1, a spaCy symbol) after its first use, and any later text with that token then fails
    # an assertion, on which datatrove tokenizes the text again without any "IS_ALPHA" in it. One text here makes
    # that behaviour hold from the first document on instead of the second.
    with nlp.memory_zone():
        tokenizer("IS_ALPHA")

    def plain(text: str) -> tuple[str, ...]:
        with nlp.memory_zone():
            return _stripped(token.text for token in tokenizer(text))

    def whole(text: str) -> tuple[str, ...]:
        try:
            return plain(text)
        except Exception:
            if "IS_ALPHA" not in text:
                raise
            return plain(text.replace("IS_ALPHA", ""))

    if not isinstance(tokenizer, Tokenizer):  # vi: pyvi's model reads the words around
        return whole

    # spaCy's rule-based tokenizer splits each whitespace-free chunk on its own, except where a special case spans
    # words ("EE. UU.", "в т.ч."): so the tokens of a chunk are memoised, and only texts holding such a special
    # case, and chunks not seen yet, go through spaCy (~20 µs a new chunk).
    spanning = _finder(rule for rule in tokenizer.rules if not rule.isspace() and any(c.isspace() for c in rule))
    memo: dict[str, tuple[str, ...]] = {}

    def tokenize(text: str) -> tuple[str, ...]:
        if spanning is not None and next(spanning.iter(text), None) is not None:
            return whole(text)
        if len(memo) > _CHUNK_MEMO_SIZE:
            memo.clear()
        chunks = text.split()
        new = {chunk for chunk in chunks if chunk not in memo}
        if new:
            try:
                with nlp.memory_zone():
                    for chunk in new:
                        memo[chunk] = _stripped(token.text for token in tokenizer(chunk))
            except Exception:
                if "IS_ALPHA" not in text:
                    raise
                return plain(text.replace("IS_ALPHA", ""))
        return tuple(chain.from_iterable(map(memo.__getitem__, chunks)))

    return tokenize


def _finder(strings: Iterable[str]):
    """An Aho-Corasick automaton of ``strings`` (its ``iter(text)`` yields their occurrences), None if none."""
    import ahocorasick

    automaton = ahocorasick.Automaton()
    for string in strings:
        automaton.add_word(string, string)
    if not len(automaton):
        return None
    automaton.make_automaton()
    return automaton


def _jieba() -> Tokenize:
    # spaCy's zh tokenizer with segmenter=jieba: jieba.cut's words, which cover the text, whitespace ones dropped
    with warnings.catch_warnings():  # jieba imports pkg_resources, which warns on every import
        warnings.simplefilter("ignore", DeprecationWarning)
        import jieba

    jieba.setLogLevel(logging.WARNING)  # else four lines on stderr ("Building prefix dict ...") in every job

    return lambda text: _stripped(jieba.cut(text, cut_all=False))


def _sudachi() -> Tokenize:
    # datatrove's Japanese tokenizer: SudachiPy's split mode A (sudachidict_core) surfaces, whitespace ones dropped,
    # over the text cut into chunks of at most 40,000 UTF-8 bytes
    from sudachipy import Dictionary, SplitMode

    tokenizer = Dictionary().tokenizer(mode=SplitMode.A)

    def tokenize(text: str) -> tuple[str, ...]:
        return _stripped(m.surface() for chunk in _byte_chunks(text) for m in tokenizer.tokenize(chunk))

    return tokenize


def _byte_chunks(text: str) -> list[str]:
    """``text`` cut where datatrove's ``chunk_text_on_bytes(text, 40_000)`` cuts it.

    Hand-written, not imported: datatrove re-encodes a growing prefix ten characters at a time (quadratic on long
    texts); this finds the same cut points by bisection. Its rules: start from a guess of 40,000 bytes times the
    text's characters per byte, less 10; shrink the guess by 10 characters (for good) while it is over 40,000
    bytes; grow it 10 characters at a time until it reaches 40,000 bytes or the end of the text, and step back 10
    characters if it went over.
    """
    limit = _SUDACHI_MAX_BYTES
    n_bytes = len(text.encode("utf-8"))
    guess = int(max(limit * (len(text) / n_bytes if n_bytes else 1) - 10, 1))
    chunks = []
    start = 0

    def size(n: int) -> int:
        return len(text[start : start + n].encode("utf-8"))

    while start < len(text):
        left = len(text) - start
        if size(guess) > limit:
            guess = max(guess - 10, 1)
            continue
        cut = guess
        if size(guess) < limit and guess < left:
            # the fewest 10-character steps that reach the limit or the end (a character is at least one byte)
            lo, hi = 1, -(-(min(left, limit) - guess) // 10)
            while lo < hi:
                mid = (lo + hi) // 2
                if guess + 10 * mid >= left or size(guess + 10 * mid) >= limit:
                    hi = mid
                else:
                    lo = mid + 1
            cut = min(left, guess + 10 * lo)
            if size(cut) > limit:
                cut -= 10
        chunks.append(text[start : start + cut])
        start += cut
    return chunks


# --- the other libraries ---


def _thai(_code: str):
    def build():
        from pythainlp.tokenize import word_tokenize

        return lambda text: _stripped(word_tokenize(text, keep_whitespace=False, engine="newmm-safe"))

    return "pythainlp:newmm-safe", build


def _indic(code: str):
    def build():
        from indicnlp.tokenize.indic_tokenize import trivial_tokenize

        return lambda text: _stripped(trivial_tokenize(text, code))

    return f"indicnlp:{code}", build


def _kiwi(_code: str):
    def build():
        from kiwipiepy import Kiwi

        kiwi = Kiwi(model_type="sbg")
        long_numbers = re.compile("[0-9,]{20,}")  # datatrove removes them: Kiwi has trouble with them

        # datatrove slices the original text at the offsets Kiwi gives in the text without the long numbers
        return lambda text: _stripped(text[t.start : t.end] for t in kiwi.tokenize(long_numbers.sub("", text)))

    return "kiwi", build


def _khmer(_code: str):
    def build():
        from khmernltk import word_tokenize

        return lambda text: _stripped(word_tokenize(text, return_tokens=True))

    return "khmer-nltk", build


def _lao(_code: str):
    def build():
        from laonlp.tokenize import word_tokenize

        return lambda text: _stripped(word_tokenize(text))

    return "laonlp", build


def _burmese(_code: str):
    def build():
        import pyidaungsu

        return lambda text: _stripped(pyidaungsu.tokenize(text, form="word"))

    return "pyidaungsu", build


def _missing_stanza(code: str) -> str | None:
    """Why Stanza cannot split ``code`` without downloading, or None when it can (the pipeline is then cached)."""
    if importlib.util.find_spec("stanza") is None:
        return "stanza not installed"
    try:
        _stanza_pipeline(code)
    except FileNotFoundError:  # stanza's errors for a missing resources.json or model file
        return f"stanza model for {code} not installed"
    return None


@cache
def _stanza_pipeline(code: str):
    import stanza

    # datatrove's pipeline, but never downloading (datatrove fetches missing models)
    return stanza.Pipeline(code, processors="tokenize", download_method=None)


def _stanza(code: str):
    def build():
        pipeline = _stanza_pipeline(code)
        return lambda text: _stripped(token.text for s in pipeline(text).sentences for token in s.tokens)

    return f"stanza:{code}", build


def _missing_botok() -> str | None:
    if importlib.util.find_spec("botok") is None:
        return "botok not installed"
    from botok.config import DEFAULT_BASE_PATH, DEFAULT_DIALECT_PACK

    if not (DEFAULT_BASE_PATH / DEFAULT_DIALECT_PACK).is_dir():  # botok's WordTokenizer() would download it
        return "botok dialect pack not installed"
    return None


def _botok(_code: str):
    def build():
        from botok import WordTokenizer

        tokenizer = WordTokenizer()
        whitespace = re.compile(r"\s+")

        def tokenize(text: str) -> tuple[str, ...]:
            try:
                found = tokenizer.tokenize(text, split_affixes=False)
            except Exception:  # datatrove retries without whitespace
                found = tokenizer.tokenize(whitespace.sub("", text), split_affixes=False)
            return _stripped(token.text for token in found)

        return tokenize

    return "botok", build


_BUILDERS = {
    "SpaCyTokenizer": _spacy,
    "StanzaTokenizer": _stanza,
    "ThaiTokenizer": _thai,
    "IndicNLPTokenizer": _indic,
    "KiwiTokenizer": _kiwi,
    "KhmerTokenizer": _khmer,
    "LaoTokenizer": _lao,
    "TibetanTokenizer": _botok,
    "BurmeseTokenizer": _burmese,
}
