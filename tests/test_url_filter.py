"""The ``url`` operator: each rule, both domain modes, and agreement with datatrove's URLFilter (FineWeb's)."""

from __future__ import annotations

import os
from pathlib import Path

import pyarrow as pa
import pytest

from jobs.curate.recipe import load_recipe
from operators.filters.url import UrlFilter
from operators.io.storage import Storage
from tests.conftest import ROOT, need

DOMAINS = ["wordpress.com", "web.archive.org", "yle.fi", "co.uk", "baike.baidu.com", "world.kbs.co.kr",
           "blogspot.com", "10.0.0.1", "example.co.uk", "host.example.com"]
EXACT_URLS = ["https://www.arbeitsagentur.de/news/arbeitsmarkt-2022", "https://www.example.org/page#top"]
BANNED = ["blog", "News", "shop-detail"]
SOFT = ["de", "und", "der", "die", "2019"]
SUBWORDS = ["kansas", "news feed", "politi"]
HOSTILE = [
    "https://WWW.WordPress.COM/x",                        # case kept, as datatrove: not listed
    "HTTPS://blog.wordpress.com/",
    "https://user:pass@blog.wordpress.com:8080/path",      # userinfo and port
    "https://wordpress.com.evil.org/",                     # listed name as a subdomain of another site
    "https://evil.org/?next=https://wordpress.com/",       # listed name in the query
    "https://evil.org\\@wordpress.com/",                   # backslash before userinfo
    "https://blog.wordpress.com./",                        # trailing root dot
    "https://blog.wordpress\u3002com/",                    # ideographic full stop
    "//blog.wordpress.com/scheme-relative",
    "http://web.archive.org/web/2019/http://www.modabot.de/",
    "http://archive.org/details/x",                        # parent of a listed host
    "http://sub.web.archive.org/",                         # child of a listed host
    "https://example.co.uk/", "https://a.b.example.co.uk/x", "https://other.co.uk/",
    "https://host.example.com/", "https://a.host.example.com/", "https://example.com/",
    "https://foo.blogspot.com/2020/01/post.html",          # PSL private suffix: registered domain blogspot.com
    "http://10.0.0.1/", "http://[2001:db8::1]/x", "https://xn--80ak6aa92e.com/", "https://пример.рф/страница",
    "https://www.example.org/page#top", "https://www.example.org/page",
    "https://x.org/blog/", "https://x.org/Blog/", "https://x.org/blogs", "https://x.org/shopdetail",
    "https://x.org/shop-detail", "https://x.org/de/und", "https://x.org/de/de", "https://x.org/de-UND-der",
    "https://x.org/KANSAS-city", "https://x.org/news_feed", "https://x.org/n-e-w-s-f-e-e-d", "https://x.org/p%6Fliti",
    "https://x.org/apolitical", "https://x.org/", "https://x.org",
]


def write(folder: Path, name: str, entries: list[str]) -> str:
    path = folder / name
    path.write_text("".join(f"{e}\n" for e in entries))
    return str(path)


def reasons(f: UrlFilter, urls: list) -> list:
    return f(pa.table({"url": urls})).column("filter_reason").to_pylist()


def test_registered_mode_matches_the_registered_domain_or_the_exact_host(tmp_path):
    f = UrlFilter(blocklists=[write(tmp_path, "d.txt", DOMAINS)], domain_match="registered")
    urls = ["https://sub.example.co.uk/", "https://example.co.uk", "https://other.co.uk/", "https://host.example.com/",
            "https://a.host.example.com/", "https://example.com/", "https://foo.blogspot.com/", "http://10.0.0.1/",
            "https://WordPress.com/", "https://a.b.wordpress.com:8080/"]
    out = f(pa.table({"url": urls}))
    assert out.column("url_blocked_by").to_pylist() == [
        "example.co.uk", "example.co.uk", None, "host.example.com", None, None, "blogspot.com", None, None,
        "wordpress.com"]
    assert out.column("url_domain").to_pylist()[8] == "wordpress.com"
    assert out.column("filter_reason").to_pylist() == [
        "url.blocklist", "url.blocklist", None, "url.blocklist", None, None, "url.blocklist", None, None,
        "url.blocklist"]


def test_parent_mode_blocks_every_host_under_a_listed_domain(tmp_path):
    f = UrlFilter(blocklists=[write(tmp_path, "d.txt", DOMAINS)])
    urls = ["https://sub.example.co.uk/", "https://other.co.uk/", "https://a.host.example.com/", "https://example.com/",
            "http://10.0.0.1/", "https://WordPress.com/"]
    assert f(pa.table({"url": urls})).column("url_blocked_by").to_pylist() == [
        "example.co.uk", "co.uk", "host.example.com", None, "10.0.0.1", "wordpress.com"]


def test_exact_urls_words_soft_words_and_subwords(tmp_path):
    f = UrlFilter(url_blocklists=[write(tmp_path, "u.txt", ["# comment", *EXACT_URLS])],
                  banned_words=[write(tmp_path, "b.txt", BANNED)],
                  soft_banned_words=[write(tmp_path, "s.txt", SOFT)], soft_word_threshold=2,
                  banned_subwords=[write(tmp_path, "w.txt", SUBWORDS)])
    urls = ["https://www.example.org/page#top", "https://www.example.org/page", "https://x.org/blog/",
            "https://x.org/Blog/", "https://x.org/news/shopdetail", "https://x.org/de/de", "https://x.org/de-und",
            "https://x.org/DE-und", "https://x.org/Heartland-News_Feed", "https://x.org/apolitical", None,
            "mailto:someone", "http://[::1/"]
    out = f(pa.table({"url": urls}))
    assert out.column("url_listed").to_pylist() == [True] + [False] * 12
    assert out.column("url_banned_word").to_pylist() == [None, None, "blog", None, "news", None, None, None, None,
                                                         None, None, None, None]
    assert out.column("url_soft_banned_words").to_pylist() == [0, 0, 0, 0, 0, 1, 2, 1, 0, 0, 0, 0, 0]
    assert out.column("url_banned_subword").to_pylist() == [None, None, None, None, None, None, None, None,
                                                            "newsfeed", "politi", None, None, None]
    assert out.column("filter_reason").to_pylist() == [
        "url.blocked_url", None, "url.banned_word", None, "url.banned_word", None, "url.soft_banned_words", None,
        "url.banned_subword", "url.banned_subword", "url.invalid", "url.invalid", "url.invalid"]
    assert reasons(UrlFilter(soft_banned_words=f.p.soft_banned_words, soft_word_threshold=1),
                   ["https://x.org/de/de"]) == ["url.soft_banned_words"]


def test_word_lists_load_from_s3(s3_server, s3_client):
    s3_client.create_bucket(Bucket="lists")
    s3_client.put_object(Bucket="lists", Key="words.txt", Body=b"# banned\nblog\n")
    f = UrlFilter(storage=Storage(endpoint_url=s3_server), banned_words=["s3://lists/words.txt"])
    assert reasons(f, ["https://x.org/blog", "https://x.org/vlog"]) == ["url.banned_word", None]


def test_fineweb_recipe_uses_registered_matching_and_the_example_lists(monkeypatch):
    params = load_recipe(str(ROOT / "jobs" / "recipes" / "fineweb.yaml")).operator_params("url")
    assert params["domain_match"] == "registered" and params["soft_word_threshold"] == 2
    monkeypatch.chdir(ROOT)  # the recipe's list paths are relative to the repository
    f = UrlFilter(**params)
    assert reasons(f, ["https://www.example.net/", "https://www.example.org/blocked-page", "https://x.org/porn",
                       "https://x.org/nude-and-naked", "https://x.org/Free-Sex", "https://town.example.org/"]) == [
        "url.blocklist", "url.blocked_url", "url.banned_word", "url.soft_banned_words", "url.banned_subword", None]


@pytest.fixture(scope="module")
def agreement_urls(shared_data) -> list[str]:
    need("datatrove", "compare")
    from fastwarc.warc import ArchiveIterator, WarcRecordType

    with open(shared_data / "real-pages-dev.warc.gz", "rb") as f:
        real = [r.headers.get("WARC-Target-URI") for r in ArchiveIterator(f, record_types=WarcRecordType.response)]
    return real + HOSTILE


DATATROVE_REASONS = {"domain": "url.blocklist", "subdomain": "url.blocklist", "url": "url.blocked_url",
                     "hard_blacklisted": "url.banned_word", "soft_blacklisted": "url.soft_banned_words",
                     "blacklisted_subword": "url.banned_subword"}


def datatrove_reasons(lists: dict[str, str], urls: list[str]) -> list[str | None]:
    """datatrove's URLFilter on the same list files, with tldextract on the same bundled suffix snapshot."""
    from datatrove.data import Document
    from datatrove.pipeline.filters import URLFilter
    from tldextract import TLDExtract

    def lines(key):
        with open(lists[key]) as f:
            return f.readlines()

    ref = URLFilter(extra_domains=lines("blocklists"), extra_urls=lines("url_blocklists"),
                    banned_words=lines("banned_words"), soft_banned_words=lines("soft_banned_words"),
                    banned_subwords=lines("banned_subwords"), soft_word_threshold=2, use_integrated_lists=False)
    ref.tldextractor = TLDExtract(cache_dir=None, suffix_list_urls=())  # its default fetches the live list
    out = []
    for i, url in enumerate(urls):
        result = ref.filter(Document(text="", id=str(i), metadata={"url": url}))
        out.append(None if result is True else DATATROVE_REASONS[result[1]])
    return out


def agreement(lists: dict[str, str], urls: list[str]) -> list[str | None]:
    ours = reasons(UrlFilter(domain_match="registered", soft_word_threshold=2,
                             **{key: [path] for key, path in lists.items()}), urls)
    theirs = datatrove_reasons(lists, urls)
    assert [(u, a) for u, a, b in zip(urls, ours, theirs, strict=True) if a != b] == []
    return ours


DATATROVE_WARNING = "ignore:The 'registered_domain' property is deprecated:DeprecationWarning"


@pytest.mark.filterwarnings(DATATROVE_WARNING)
def test_agrees_with_datatrove_on_real_and_hostile_urls(tmp_path, agreement_urls):
    lists = {"blocklists": write(tmp_path, "d.txt", DOMAINS), "url_blocklists": write(tmp_path, "u.txt", EXACT_URLS),
             "banned_words": write(tmp_path, "b.txt", BANNED), "soft_banned_words": write(tmp_path, "s.txt", SOFT),
             "banned_subwords": write(tmp_path, "w.txt", SUBWORDS)}
    ours = agreement(lists, agreement_urls)
    assert set(ours) == {None, "url.blocklist", "url.blocked_url", "url.banned_word", "url.soft_banned_words",
                         "url.banned_subword"}


@pytest.mark.filterwarnings(DATATROVE_WARNING)
def test_agrees_with_datatrove_on_its_own_word_lists(tmp_path, agreement_urls):
    """datatrove's shipped word lists, read in place from the installed package (never copied here)."""
    from datatrove.utils._import_utils import ASSETS_PATH

    lists = {"blocklists": write(tmp_path, "d.txt", DOMAINS), "url_blocklists": write(tmp_path, "u.txt", EXACT_URLS),
             **{key: os.path.join(ASSETS_PATH, f"{key}.txt")
                for key in ("banned_words", "soft_banned_words", "banned_subwords")}}
    hits = [f"https://x.org/{path}" for path in ("porn", "Porn", "hot-sexy-babes", "sexy", "free-sex-videos",
                                                 "2-girls-1-cup", "cumming-soon", "cocktails")]
    ours = agreement(lists, agreement_urls + hits)
    assert ours[-len(hits):] == ["url.banned_word", None, "url.soft_banned_words", None, "url.banned_subword",
                                 "url.banned_subword", "url.banned_word", None]
