"""Language id, URL blocklist and PII redaction on small texts with exact expected values."""

import pyarrow as pa

from operators.filters.language import LanguageFilter
from operators.filters.pii import PiiFormatter
from operators.filters.url import UrlFilter, blocked_domain, host_of
from tests.conftest import ENGLISH, GERMAN


def test_language_labels_scores_and_reasons():
    texts = [ENGLISH[0], GERMAN[0], "ok ok", ""]
    out = LanguageFilter(languages=["en"], threshold=0.65)(pa.table({"text": texts}))
    assert out.column("language").to_pylist()[:2] == ["eng_Latn", "deu_Latn"]
    scores = out.column("language_score").to_pylist()
    assert scores[0] > 0.9 and scores[1] > 0.9 and all(0 <= s <= 1 for s in scores)
    assert out.column("filter_reason").to_pylist()[:2] == [None, "language.not_allowed"]
    assert out.column("filter_reason").to_pylist()[3] in ("language.not_allowed", "language.score")
    anything = LanguageFilter(languages=[], threshold=0.0)(pa.table({"text": texts}))
    assert anything.column("filter_reason").null_count == 4


def test_language_keeps_an_earlier_reason():
    batch = pa.table({"text": [GERMAN[0]], "filter_reason": ["url.blocklist"]})
    assert LanguageFilter()(batch).column("filter_reason").to_pylist() == ["url.blocklist"]


def test_url_blocklist_matches_domain_and_subdomains(tmp_path):
    listing = tmp_path / "domains.txt"
    listing.write_text("# comment\nbad.example\nEvil.Example.  # trailing dot and case\n")
    f = UrlFilter(blocklists=[str(listing)])
    urls = ["https://bad.example/x", "http://www.BAD.example:8080/y", "https://notbad.example/",
            "https://evil.example", "mailto:someone", None]
    out = f(pa.table({"url": urls}))
    assert out.column("url_blocked_by").to_pylist() == ["bad.example", "bad.example", None, "evil.example",
                                                        None, None]
    assert out.column("filter_reason").to_pylist() == ["url.blocklist", "url.blocklist", None, "url.blocklist",
                                                       "url.invalid", "url.invalid"]
    assert host_of("https://[::1]:80/") == "::1" and blocked_domain("a.b.c", frozenset({"b.c"})) == "b.c"


def test_pii_redacts_emails_and_ipv4_and_counts():
    texts = ["Write to jane.doe+news@mail.example.co.uk or admin@site.org.",
             "Server 203.0.113.77 and 8.8.8.8; version 1.2.3 and 300.1.1.1 stay.", "nothing here", None]
    out = PiiFormatter()(pa.table({"text": texts}))
    assert out.column("text").to_pylist() == [
        "Write to email@example.com or email@example.com.",
        "Server 192.0.2.1 and 192.0.2.1; version 1.2.3 and 300.1.1.1 stay.", "nothing here", None]
    assert out.column("pii_emails").to_pylist() == [2, 0, 0, None]
    assert out.column("pii_ipv4").to_pylist() == [0, 2, 0, None]
    assert "filter_reason" not in out.column_names
    kept = PiiFormatter(ipv4=False)(pa.table({"text": texts[1:2]}))
    assert kept.column("text").to_pylist() == texts[1:2] and kept.column("pii_ipv4").to_pylist() == [None]
