"""Text helpers shared by the quality filters.

``words`` splits text like spaCy's blank English tokenizer (``spacy.blank("en")``, token texts
stripped, empty ones dropped), which is what the reference implementations of the Gopher, C4 and
FineWeb rules count on. It re-implements the tokenizer's algorithm (whitespace chunks, then prefix,
suffix and infix rules, URL matching and special cases such as contractions) with compiled regular
expressions and a memo per chunk, so it runs without spaCy and ~25x faster.
``sentence_count`` reproduces spaCy's rule-based ``sentencizer`` on top of the same tokens.
"""

from __future__ import annotations

import string
import sys
import unicodedata
from functools import lru_cache

import regex

# --- character classes (spaCy's lists are script ranges; Unicode properties are close enough) ---
_ALPHA = r"\p{L}"
_LOWER = r"\p{Ll}\p{Lo}"
_UPPER = r"\p{Lu}\p{Lo}"
_ICONS = r"\p{So}"
_PUNCT = "… , : ; ! ? ¿ ؟ ¡ ( ) [ ] { } < > _ # * & 。 ？ ！ ， 、 ； ： ～ · । ، ۔ ؛ ٪".split() + ["……"]
_QUOTES = "' \" ” “ ` ‘ ´ ’ ‚ , „ » « 「 」 『 』 （ ） 〔 〕 【 】 《 》 〈 〉 〈 〉 ⟦ ⟧".split()
_CURRENCY = "$ £ € ¥ ฿ US$ C$ A$ ₽ ﷼ ₴".split() + [chr(c) for c in range(0x20A0, 0x20C0)]
_UNITS = (
    "km km² km³ m m² m³ dm dm² dm³ cm cm² cm³ mm mm² mm³ ha µm nm yd in ft kg g mg µg t lb oz m/s km/h "
    "kmh mph hPa Pa mbar mb MB kb KB gb GB tb TB T G M K % км км² км³ м м² м³ дм дм² дм³ см см² см³ мм "
    "мм² мм³ нм кг г мг м/с км/ч кПа Па мбар Кб КБ кб Мб МБ мб Гб ГБ гб Тб ТБ тб"
).split()
_HYPHENS = "- – — -- --- —— ~".split()


def _alt(items) -> str:
    return "|".join(regex.escape(i) for i in items)


def _cls(items) -> str:
    return "".join(regex.escape(i) for i in items)


_Q = _cls(_QUOTES)
_ELLIPSES = [r"\.\.+", "…"]
_PREFIXES = (
    [regex.escape(c) for c in "§%=—–"]
    + [r"\+(?![0-9])"]
    + [regex.escape(p) for p in _PUNCT + _QUOTES + _CURRENCY]
    + _ELLIPSES
    + [f"[{_ICONS}]"]
)
_SUFFIXES = (
    [regex.escape(p) for p in _PUNCT + _QUOTES + ["'s", "'S", "’s", "’S", "—", "–"]]
    + _ELLIPSES
    + [
        f"[{_ICONS}]",
        r"(?<=[0-9])\+",
        r"(?<=°[FfCcKk])\.",
        f"(?<=[0-9])(?:{_alt(_CURRENCY)})",
        f"(?<=[0-9])(?:{_alt(_UNITS)})",
        rf"(?<=[0-9{_LOWER}%²\-\+|()?:{_cls(_PUNCT)}{_Q}])\.",
        rf"(?<=[{_UPPER}][{_UPPER}])\.",
    ]
)
_INFIXES = _ELLIPSES + [
    f"[{_ICONS}]",
    r"(?<=[0-9])[+\-\*^](?=[0-9-])",
    rf"(?<=[{_LOWER}{_Q}])\.(?=[{_UPPER}{_Q}])",
    rf"(?<=[{_ALPHA}]),(?=[{_ALPHA}])",
    rf"(?<=[{_ALPHA}0-9])(?:{_alt(_HYPHENS)})(?=[{_ALPHA}])",
    rf"(?<=[{_ALPHA}0-9])[:<>=/](?=[{_ALPHA}])",
]
_prefix = regex.compile("|".join(_PREFIXES)).match
_suffix = regex.compile("|".join(p + "$" for p in _SUFFIXES)).search
_infixes = regex.compile("|".join(_INFIXES)).finditer
_url = regex.compile(
    r"(?:[\w+\-.]{2,}://)?(?:\S+(?::\S*)?@)?"
    r"(?:\d{1,3}(?:\.\d{1,3}){3}|(?:(?:[A-Za-z0-9\u00a1-\uffff][A-Za-z0-9\u00a1-\uffff_-]{0,62})?"
    rf"[A-Za-z0-9\u00a1-\uffff]\.)+[{_LOWER}]{{2,63}})(?::\d{{2,5}})?(?:[/?#]\S*)?"
).fullmatch


_DIGITS = frozenset("0123456789")


def _suffix_len(s: str) -> int:
    """Length of the leftmost-starting suffix match; only a run of dots can be longer than 4 chars."""
    if not s:
        return 0
    if s.endswith(".."):
        return len(s) - len(s.rstrip("."))
    last, tail = s[-1], s[-6:]
    if last in _DIGITS or last.isalpha() and not (tail[-2:-1] in "'’" or any(c in _DIGITS for c in tail)):
        return 0  # fast path: no suffix rule ends in a digit; letters end only units and 's
    m = _suffix(s, max(0, len(s) - 6))
    return len(s) - m.start() if m else 0


def _special_cases() -> dict[str, tuple[str, ...]]:
    """Strings spaCy's English tokenizer never splits by rule: contractions, abbreviations, emoticons."""
    out: dict[str, tuple[str, ...]] = {}

    def add(*pieces: str) -> None:
        for apos in ("'", "’", ""):
            parts = [p.replace("'", apos) for p in pieces]
            for first in {parts[0], parts[0].title()}:
                out["".join([first, *parts[1:]])] = (first, *parts[1:])

    for verb in "could did does do had might must need ought sha should wo would ca may".split():
        add(verb, "n't"), add(verb, "n't", "'ve")
    for verb in "ai are dare has have is was were".split():
        add(verb, "n't")
    for verb in "could might must should would not".split():
        add(verb, "'ve")
    wh = "that this these those there what when where who why how".split()
    for pron in ["i", "you", "he", "she", "it", "we", "they", *wh]:
        for tail in (("'ll",), ("'ll", "'ve"), ("'d",), ("'d", "'ve")):
            add(pron, *tail)
    for pron in ["you", "we", "they", *wh[2:]]:
        add(pron, "'re"), add(pron, "'ve")
    for pron in ["he", "she", "it", *wh]:
        add(pron, "'s")
    add("i", "'ve"), add("i", "'m"), add("i", "'m", "a"), add("how", "'d", "'y"), add("y'", "all")
    for word, pieces in {
        "let's": ("let", "'s"),
        "cannot": ("can", "not"),
        "gonna": ("gon", "na"),
        "gotta": ("got", "ta"),
        "c'mon": ("c'm", "on"),
    }.items():
        for w, first in ((word, pieces[0]), (word.title(), pieces[0].title())):
            out[w] = (first, *pieces[1:])
    out["y'all"], out["Y'all"], out["Y’all"] = ("y'", "all"), ("Y'", "all"), ("Y’", "all")
    for word in "ill its hell shell shed were well whore".split():
        out.pop(word, None), out.pop(word.title(), None)
    for h in range(1, 13):
        for m in ("a.m.", "am", "p.m.", "pm"):
            out[f"{h}{m}"] = (str(h), m)
    singles = (
        "'s 'S ’s ’S 'd ’d 'em ’em 'll ’ll 're ’re 'bout ’bout 'cause 'Cause ’cause ’Cause 'cos 'Cos "
        "'coz 'Coz 'cuz 'Cuz 'nuff ’nuff ' '' ’ ’’ ‘S ‘s C++ and/or w/o a.m. p.m. e.g. E.g. E.G. i.e. I.e. "
        "I.E. vs. v.s. co. Ph.D. o'clock O'clock o’clock O’clock ma'am Ma'am ma’am Ma’am "
        "Mr. Mrs. Ms. Dr. Prof. Rep. Rev. Sen. Gen. Gov. Adm. St. Mt. Jr. Bros. Co. Corp. Inc. Ltd. Messrs. "
        "Jan. Feb. Mar. Apr. Jun. Jul. Aug. Sep. Sept. Oct. Nov. Dec. Ak. Ala. Ariz. Ark. Calif. Colo. "
        "Conn. Del. Fla. Ga. Ia. Id. Ill. Ind. Kan. Kans. Ky. La. Mass. Md. Mich. Minn. Miss. Mo. Mont. "
        "Neb. Nebr. Nev. Okla. Ore. Pa. Tenn. Va. Wash. Wis. D.C. N.C. N.D. N.H. N.J. N.M. N.Y. S.C. "
        "°c. °f. °k. ä. ö. ü. "
        + " ".join(f"{c}." for c in string.ascii_lowercase)
        + " :) :-) :)) :-)) :))) :-))) (: (-: =) (= :] :-] [: [-: [= =] :o) (o: :} :-} 8) 8-) (-8 ;) ;-) "
        "(; (-; :( :-( :(( :-(( :((( :-((( ): )-: =( >:( :') :'-) :'( :'-( :’) :’-) :’( :’-( :/ :-/ =/ "
        "=| :| :-| ]= =[ :1 :P :-P :p :-p :O :-O :o :-o :0 :-0 :() >:o :* :-* :3 :-3 =3 :> :-> :X :-X "
        ":x :-x :D :-D ;D ;-D =D xD XD xDD XDD 8D 8-D ^_^ ^__^ ^___^ >.< >.> <.< ._. ;_; -_- -__- v.v "
        "V.V v_v V_V o_o o_O O_o O_O 0_o o_0 0_0 o.O O.o O.O o.o 0.0 o.0 @_@ <3 <33 <333 </3 (^_^) "
        '(-_-) (._.) (>_<) (*_*) (¬_¬) ಠ_ಠ ಠ︵ಠ (ಠ_ಠ) ¯\\(ツ)/¯ (╯°□°）╯︵┻━┻ ><(((*> \\") <space>'
    )
    for word in singles.split():
        out.setdefault(word, (word,))
    for word in "doin goin havin lovin nothin nuthin somethin ol".split():
        for w in (word, word.title()):
            for tail in ("", "'", "’"):
                out[w + tail] = (w + tail,)
    return out


_SPECIALS = _special_cases()
# Chunk -> tokens. Emptied when full, so a crawl's long tail of one-off chunks cannot grow a worker's memory
# with the shard (about 30 MiB at most); on a stream of real pages it costs no measurable speed against a
# memo five times larger, and a two-generation memo of the same size was slower (hot words re-promoted).
_MEMO_SIZE = 200_000
_memo: dict[str, tuple[str, ...]] = {}


MAX_AFFIX_ROUNDS = 200  # each round copies the chunk: a 600k-character run of "!?." took 94 s unbounded


def _split_chunk(chunk: str, specials: dict[str, tuple[str, ...]]) -> list[str]:
    """Tokens of one whitespace-free chunk, following spaCy's affix loop (for at most MAX_AFFIX_ROUNDS
    rounds, which no word reaches; past them the rest is split by infixes only)."""
    prefixes: list[str] = []
    suffixes: list[str] = []
    s, last, rounds = chunk, -1, 0
    while s and len(s) != last and s not in specials and rounds < MAX_AFFIX_ROUNDS:
        last, rounds = len(s), rounds + 1
        m = _prefix(s)
        pre = m.end() if m else 0
        if pre and s[pre:] in specials:
            prefixes.append(s[:pre])
            s = s[pre:]
            break
        suf = _suffix_len(s[pre:])
        if suf and s[:-suf] and s[:-suf] in specials:
            suffixes.append(s[-suf:])
            s = s[:-suf]
            break
        if pre and suf and pre + suf <= len(s):
            prefixes.append(s[:pre])
            suffixes.append(s[-suf:])
            s = s[pre:-suf]
        elif pre:
            prefixes.append(s[:pre])
            s = s[pre:]
        elif suf:
            suffixes.append(s[-suf:])
            s = s[:-suf]
    out = prefixes
    if s in specials:
        out.extend(specials[s])
    elif "." in s and _url(s):
        out.append(s)
    elif s:
        start = 0
        for m in _infixes(s):
            a, b = m.span()
            if a == 0:
                continue
            if a != start:
                out.append(s[start:a])
            if a != b:
                out.append(s[a:b])
            start = b
        if start < len(s):
            out.append(s[start:])
    out.extend(reversed(suffixes))
    return out


# Special cases that the affix rules split are re-merged afterwards, longest and leftmost first.
_MERGES: dict[str, list[tuple[str, ...]]] = {}
for _special in _SPECIALS:
    _pieces = tuple(_split_chunk(_special, {}))
    if len(_pieces) > 1:
        _MERGES.setdefault(_pieces[0], []).append(_pieces)


def _merge_specials(toks: list[str]) -> tuple[str, ...]:
    spans = [
        (i, i + len(pat))
        for i, tok in enumerate(toks)
        for pat in _MERGES.get(tok, ())
        if tuple(toks[i : i + len(pat)]) == pat
    ]
    if not spans:
        return tuple(toks)
    spans.sort(key=lambda span: (span[0] - span[1], span[0]))
    seen: set[int] = set()
    keep = []
    for a, b in spans:
        if a not in seen and b - 1 not in seen:
            keep.append((a, b))
        seen.update(range(a, b))
    out, pos = [], 0
    for a, b in sorted(keep):
        out += toks[pos:a]
        out += _SPECIALS["".join(toks[a:b])]
        pos = b
    return tuple(out + toks[pos:])


def _tokens(chunk: str) -> tuple[str, ...]:
    toks = _memo.get(chunk)
    if toks is None:
        if len(_memo) > _MEMO_SIZE:
            _memo.clear()
        toks = [chunk] if chunk.isalpha() and chunk not in _SPECIALS else _split_chunk(chunk, _SPECIALS)
        toks = _memo[chunk] = tuple(toks) if len(toks) == 1 else _merge_specials(toks)
    return toks


@lru_cache(maxsize=1024)
def words(text: str) -> tuple[str, ...]:
    """Word tokens of ``text`` as spaCy's blank English tokenizer gives them (stripped, non-empty).

    Cached per text because several filters split the same documents one batch after the other (the
    Gopher rules, FineWeb's): the cache holds a whole batch (up to 1024 documents; ``Chain`` empties it
    before each batch); do not mutate the result.
    """
    memo = _memo
    out: list[str] = []
    for chunk in text.split():
        toks = memo.get(chunk) or _tokens(chunk)
        out.extend(toks)
    return tuple(out)


# --- sentences (spaCy's sentencizer) ---
SENTENCE_PUNCT = frozenset(
    "!.?։؟۔܀܁܂߹।॥၊။።፧፨᙮᜵᜶᠃᠉᥄᥅᪨᪩᪪᪫᭚᭛᭞᭟᰻᰼᱾᱿‼‽⁇⁈⁉⸮⸼꓿꘎꘏꛳꛷꡶꡷꣎꣏꤯꧈꧉꩝꩞꩟꫰꫱꯫﹒﹖﹗！．？"
    "𐩖𐩗𑁇𑁈𑂾𑂿𑃀𑃁𑅁𑅂𑅃𑇅𑇆𑇍𑇞𑇟𑈸𑈹𑈻𑈼𑊩𑑋𑑌𑗂𑗃𑗉𑗊𑗋𑗌𑗍𑗎𑗏𑗐𑗑𑗒𑗓𑗔𑗕𑗖𑗗𑙁𑙂𑜼𑜽𑜾𑩂𑩃𑪛𑪜𑱁𑱂𖩮𖩯𖫵𖬷𖬸𖭄𛲟𝪈｡。"
)
_has_sentence_punct = regex.compile("[" + regex.escape("".join(SENTENCE_PUNCT)) + "]").search
_ws_split = regex.compile(r"(\s+)").split


def _is_punct(token: str) -> bool:
    return all(unicodedata.category(c)[0] == "P" for c in token)


def sentence_count(text: str) -> int:
    """Number of sentences spaCy's sentencizer finds in ``text`` (a line, for C4).

    A sentence ends at a sentence-final punctuation token; the next starts at the next token that is not
    punctuation. Whitespace runs are tokens (less the single space after a token). Plain words
    (alphanumeric chunks) are never punctuation, so only the other chunks are split, and a run of plain
    words between them acts as one non-punctuation token: the loop visits only the other parts.
    """
    if not _has_sentence_punct(text):
        return 1 if text else 0
    parts = _ws_split(text)
    events = sorted([i for i in range(0, len(parts), 2) if not parts[i].isalnum()]
                    + [i for i in range(1, len(parts), 2) if parts[i] != " " or not parts[i - 1]])
    n, seen, previous = 0, False, -1
    for i in [*events, len(parts)]:
        if seen and (previous + 1 if previous % 2 else previous + 2) < i:  # a plain word since the last event
            n, seen = n + 1, False
        previous = i
        if i == len(parts):
            break
        part = parts[i]
        if i % 2 == 0:
            toks = _tokens(part) if part else ()
        else:
            tok = part[1:] if part[0] == " " and parts[i - 1] else part
            toks = (tok,) if tok else ()
        for tok in toks:
            if tok in SENTENCE_PUNCT:
                seen = True
            elif seen and not _is_punct(tok):
                n, seen = n + 1, False
    return n + 1


# --- punctuation sets ---
# Unicode Sentence_Terminal as of Unicode 15.0 (the version the FineWeb rules were written against),
# plus three Khmer marks that end sentences; later Unicode additions are dropped for stable results.
_LATER_TERMINALS = {
    0x2024,
    0xFE12,
    0xFE15,
    0xFE16,
    0x2CF9,
    0x2CFA,
    0x2CFB,
    0x1B4E,
    0x1B4F,
    0x1B7F,
    0x113D4,
    0x113D5,
    0x16D6E,
    0x16D6F,
    0x2E60,
    0x2E61,
}
TERMINAL_PUNCTUATION = frozenset(
    c
    for c in regex.findall(r"\p{Sentence_Terminal}", "".join(map(chr, range(sys.maxunicode + 1))))
    if ord(c) not in _LATER_TERMINALS
) | frozenset("\u17d6\u17d9\u17da")

# Characters that make a token a "symbol" rather than a word in Gopher's counts: ASCII punctuation,
# control characters (but not tab and newline), sentence terminals, and the typographic and CJK
# punctuation common in web text.
PUNCTUATION = (
    frozenset(string.punctuation)
    | frozenset(chr(c) for c in [*range(0, 32), *range(127, 160)] if chr(c) not in "\t\n")
    | TERMINAL_PUNCTUATION
    | frozenset("«»´–—’“”„…∶━►、〈〉《》「」【】％（），：；～")
)
