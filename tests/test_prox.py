"""ProX program refinement: inputs, parsing and running of hand-written model programs, replay."""

from __future__ import annotations

import tracemalloc

import pytest

from operators.llm.prompts import Prompt, load_prompt
from operators.llm.prox import (
    Call,
    Provenance,
    apply_program,
    doc_input,
    line_chunks,
    number_lines,
    parse_doc_program,
    parse_program,
    refine,
    replay,
    too_little_left,
)

ZERO = {"remove_lines": 0, "normalize": 0, "keep_chunk": 0, "lines_removed": 0}
PAGE = "\n".join([
    "Home | News | Sport | Contact",
    "Bridges of the Old Town",
    "The old bridge was built in 1820 , and it crosses the river near the mill.",
    "It is 200 m long &amp; 8 m wide, made of local stone.",
    "Share this: Facebook Twitter Email",
    "The new bridge opened in 1975 &amp; carries the main road across the valley.",
    "Both bridges are listed monuments and can be visited all year.",
    "Cookies help us deliver our services. Accept",
    "Copyright 2024 Town Council",
])
PAGE_PROGRAMS = [
    (0, 'remove_lines(line_start=0, line_end=0)\nnormalize(source_str=" ,", target_str=",")'),
    (3, '```python\nremove_lines(line_start=4, line_end=4)\nnormalize(source_str="&amp;", target_str="&")\n```'),
    (6, "remove_lines(7, 8)"),
]
PAGE_REFINED = "\n".join([
    "Bridges of the Old Town",
    "The old bridge was built in 1820, and it crosses the river near the mill.",
    "It is 200 m long & 8 m wide, made of local stone.",
    "The new bridge opened in 1975 & carries the main road across the valley.",
    "Both bridges are listed monuments and can be visited all year.",
])
CHUNK = ["Home | About | Contact", "The bridge was built in 1820 , and it crosses the river.",
         "It is 200 m long &amp; 8 m wide.", "Share on Facebook", "Copyright 2024"]


def words(texts: list[str]) -> list[int]:
    return [len(t.split()) for t in texts]


def chars(texts: list[str]) -> list[int]:
    return [len(t) for t in texts]


def run(program: str, lines: list[str] = CHUNK, first: int = 10):
    calls, parse_errors = parse_program(program)
    return apply_program(lines, first, calls, parse_errors)


def test_prox_prompts_list_the_functions_and_budgets():
    prompts = {n: load_prompt(n) for n in ("prox_doc", "prox_chunk", "prox_doc_gair", "prox_chunk_gair")}
    assert {n: (p.family, p.length_ratio, p.max_input_tokens) for n, p in prompts.items()} == {
        "prox_doc": ("prox", None, 2000), "prox_chunk": ("prox", None, 1500),
        "prox_doc_gair": ("prox", None, 1960), "prox_chunk_gair": ("prox", None, 1500)}
    assert prompts["prox_doc"].user.splitlines()[-2:] == ["keep_doc()", "drop_doc()"]
    chunk_lines = prompts["prox_chunk"].user.splitlines()
    listed = ["remove_lines(line_start=N, line_end=M)", 'normalize(source_str="...", target_str="...")', "keep_chunk()"]
    assert [line for line in chunk_lines if line in listed] == listed
    assert prompts["prox_chunk_gair"].messages("[000]a\n[001]b") == [
        {"role": "system", "content": "You are a helpful, respectful and honest assistant."},
        {"role": "user", "content": "[doc]\n[000]a\n[001]b\n[/doc]"}]
    fields = {"name": "x", "version": 1, "max_input_tokens": 10, "system": "s", "user": "{text}"}
    assert Prompt.model_validate(fields | {"family": "prox"}).length_ratio is None
    with pytest.raises(ValueError, match="length_ratio is required"):
        Prompt.model_validate(fields | {"family": "wrap"})


def test_doc_input_is_the_start_of_the_document_within_budget():
    calls = []

    def counted(texts):
        calls.append(len(texts))
        return words(texts)

    assert doc_input("One two\nthree  four five", 10, words) == "One two\nthree  four five"
    assert doc_input("One two\nthree  four five", 3, words) == "One two\nthree"
    assert doc_input(" ".join(f"w{i}" for i in range(10_000)), 100, counted) == " ".join(f"w{i}" for i in range(100))
    assert calls == [1] * 8
    assert doc_input("abcdefghij klm", 12, chars) == "abcdefghij"
    assert doc_input("abcdefghij klm", 4, chars) == "abcd"
    assert doc_input("      ", 2, chars) == "  "


def test_lines_are_numbered_across_the_document_and_widened_past_999():
    assert number_lines("a\nb\n\nc") == ["[000]a", "[001]b", "[002]", "[003]c"]
    thousand = number_lines("\n".join(["x"] * 1000))
    assert (thousand[0], thousand[-1]) == ("[000]x", "[999]x")
    more = number_lines("\n".join(["x"] * 1001))
    assert (more[0], more[999], more[1000]) == ("[0000]x", "[0999]x", "[1000]x")


def test_chunks_are_whole_numbered_lines_and_an_overlong_line_stands_alone():
    numbered = number_lines("alpha beta gamma\ndelta\na b c d e f g h\nx y\nz")
    assert line_chunks(numbered, 5, words) == [
        (0, "[000]alpha beta gamma\n[001]delta"), (2, "[002]a b c d e f g h"), (3, "[003]x y\n[004]z")]
    assert line_chunks(number_lines("a b c d e f g h\nx"), 5, words) == [(0, "[000]a b c d e f g h"), (1, "[001]x")]
    assert [first for first, _ in line_chunks(number_lines(PAGE), 40, words)] == [0, 3, 6]


def test_valid_programs_parse_exactly():
    answer = "\n".join([
        "```python",
        "remove_lines(line_start=0, line_end=2)",
        "remove_lines(3, 4)",
        "remove_lines(line_start=012, line_end=014)",
        'normalize(source_str="a, b) (c", target_str="x")',
        """normalize('say "hi"', "it's")""",
        r'normalize(source_str="line\nbreak", target_str="it\'s \\ ok")',
        'normalize(source_str="&amp;")',
        "",
        "   keep_chunk()   ",
        "skip_chunk()",
        "```",
    ])
    assert parse_program(answer) == ([
        Call("remove_lines", {"line_start": 0, "line_end": 2}),
        Call("remove_lines", {"line_start": 3, "line_end": 4}),
        Call("remove_lines", {"line_start": 12, "line_end": 14}),
        Call("normalize", {"source_str": "a, b) (c", "target_str": "x"}),
        Call("normalize", {"source_str": 'say "hi"', "target_str": "it's"}),
        Call("normalize", {"source_str": "line\nbreak", "target_str": "it's \\ ok"}),
        Call("normalize", {"source_str": "&amp;", "target_str": ""}),
        Call("keep_chunk", {}),
        Call("keep_chunk", {}),
    ], {})
    assert parse_program("") == ([], {})
    assert parse_program(None) == ([], {})


@pytest.mark.parametrize("line, reason", [
    ("remove_lines(line_start=1, line_end=2", "syntax"),
    ("remove lines 1 to 2", "syntax"),
    ("remove_lines(line_start=1, line_end=2); keep_chunk()", "syntax"),
    ('normalize("a", "' + "x" * 10_000 + '")', "syntax"),
    ("1" * 5000, "syntax"),
    ("1+" * 4000 + "1", "syntax"),
    ("keep_chunk(" + "(" * 300 + ")" * 300 + ")", "syntax"),
    ("delete_lines(line_start=1, line_end=2)", "unknown_function"),
    ("keep_doc()", "unknown_function"),
    ("keep_chunk", "not_a_call"),
    ('"just some text"', "not_a_call"),
    ("1 + 2", "not_a_call"),
    ("remove_lines(start=1, end=2)", "bad_arguments"),
    ("remove_lines(line_start='1', line_end=2)", "bad_arguments"),
    ("remove_lines(line_start=1.0, line_end=2)", "bad_arguments"),
    ("remove_lines(line_start=True, line_end=3)", "bad_arguments"),
    ("remove_lines(line_start=1)", "bad_arguments"),
    ("remove_lines(1, 2, 3)", "bad_arguments"),
    ("remove_lines(1, line_start=1)", "bad_arguments"),
    ("remove_lines(line_start=1, line_start=2)", "bad_arguments"),
    ("remove_lines(line_start=5, line_end=2)", "bad_arguments"),
    ("remove_lines(line_start=-1, line_end=2)", "bad_arguments"),
    ("remove_lines(line_start=0, line_end=10**12)", "bad_arguments"),
    ("remove_lines(line_start=x, line_end=2)", "bad_arguments"),
    ("normalize(target_str='x')", "bad_arguments"),
    ("normalize(source_str='', target_str='x')", "bad_arguments"),
    ("normalize(source_str=' ', target_str='')", "bad_arguments"),
    ("normalize(source_str=b'x', target_str='y')", "bad_arguments"),
    ("normalize(source_str=f'{x}', target_str='y')", "bad_arguments"),
    ("keep_chunk(1)", "bad_arguments"),
    ("__import__('os').system('rm -rf /')", "hostile"),
    ('exec("import os")', "hostile"),
    ("eval('1+1')", "hostile"),
    ("open('/etc/passwd')", "hostile"),
    ("getattr(remove_lines, '__globals__')", "hostile"),
    ("remove_lines.__globals__", "hostile"),
    ("remove_lines.__globals__['os'].system('x')", "hostile"),
    ("().__class__.__bases__[0].__subclasses__()", "hostile"),
    ('remove_lines(line_start=len("xx"), line_end=3)', "hostile"),
    ("remove_lines(0, 1)(2)", "hostile"),
    ("(lambda: 0)()", "hostile"),
    ("lambda: remove_lines(0, 1)", "hostile"),
    ("[remove_lines(i, i) for i in range(10)]", "hostile"),
    ("remove_lines(*[0, 1])", "hostile"),
    ("normalize(**{'source_str': 'a'})", "hostile"),
    ("(x := 1)", "hostile"),
    ("normalize(source_str=__name__, target_str='')", "hostile"),
    ("""normalize(source_str=f'{__import__("os").getcwd()}', target_str='')""", "hostile"),
])
def test_malformed_and_hostile_lines_are_rejected_and_counted(line, reason):
    assert parse_program(f"keep_chunk()\n{line}") == ([Call("keep_chunk", {})], {reason: 1})


def test_hostile_programs_are_never_executed(tmp_path):
    target = tmp_path / "pwned"
    program = "\n".join([
        f"__import__('pathlib').Path({str(target)!r}).touch()",
        f"exec(\"open({str(target)!r}, 'w').write('x')\")",
        f"open({str(target)!r}, 'w')",
        "__import__('os')._exit(3)",
        f"remove_lines(line_start=len(open({str(target)!r}, 'w').name), line_end=1)",
        f"normalize(source_str=f\"{{__import__('pathlib').Path({str(target)!r}).touch()}}\", target_str='')",
    ])
    calls, errors = parse_program(program)
    assert (calls, errors) == ([], {"hostile": 6})
    assert apply_program(CHUNK, 10, calls, errors) == (CHUNK, ZERO, {"hostile": 6, "program_ignored": 1})
    assert refine("a b c d e f g h i j k l", "keep_doc()", [(0, program)]).text == "a b c d e f g h i j k l"
    assert parse_doc_program(program.splitlines()[0]) == (None, "hostile")
    assert not target.exists()


def test_huge_ranges_are_out_of_range_without_allocating_them():
    tracemalloc.start()
    result = run("remove_lines(line_start=0, line_end=1000000000000)\nremove_lines(line_start=10, line_end=10)")
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert result == (CHUNK[1:], ZERO | {"remove_lines": 1, "lines_removed": 1}, {"out_of_range": 1})
    assert peak < 1_000_000


def test_a_program_removes_lines_and_normalizes_within_its_chunk():
    program = "\n".join(["remove_lines(line_start=10, line_end=10)", "remove_lines(line_start=13, line_end=14)",
                         'normalize(source_str=" ,", target_str=",")', 'normalize(source_str="&amp;", target_str="&")'])
    assert run(program) == (["The bridge was built in 1820, and it crosses the river.", "It is 200 m long & 8 m wide."],
                            {"remove_lines": 2, "normalize": 2, "keep_chunk": 0, "lines_removed": 3}, {})
    assert run("remove_lines(10, 12)\nremove_lines(11, 13)") == (
        CHUNK[4:], {"remove_lines": 2, "normalize": 0, "keep_chunk": 0, "lines_removed": 4}, {})
    assert run("remove_lines(10, 14)") == ([], {"remove_lines": 1, "normalize": 0, "keep_chunk": 0,
                                                "lines_removed": 5}, {})
    assert run('keep_chunk()\nnormalize(" | ", "\\n")') == (
        ["Home", "About", "Contact"] + CHUNK[1:], ZERO | {"normalize": 1, "keep_chunk": 1}, {})
    assert run("keep_chunk()") == (CHUNK, ZERO | {"keep_chunk": 1}, {})
    assert run("remove_lines(13, 13)\nnormalize('Share', 'Post')") == (
        CHUNK[:3] + CHUNK[4:], ZERO | {"remove_lines": 1, "lines_removed": 1}, {"normalize_not_found": 1})
    assert run('normalize("a", "' + "x" * 9000 + '")') == (CHUNK, ZERO, {"normalize_too_long": 1})


@pytest.mark.parametrize("program, errors", [
    ("remove_lines(20, 21)\nnormalize('absent', 'x')\nremove_lines(10, 10)",
     {"out_of_range": 1, "normalize_not_found": 1, "program_ignored": 1}),
    ("remove_lines(10, 10)\nremove lines 11\nremove_lines(9, 10)",
     {"syntax": 1, "out_of_range": 1, "program_ignored": 1}),
    ("remove_lines(10, 10)\nexec('x')\nlen('x')", {"hostile": 2, "program_ignored": 1}),
])
def test_two_errors_and_the_chunk_is_kept_as_it_was(program, errors):
    assert run(program) == (CHUNK, ZERO, errors)


def test_normalize_is_scoped_to_its_chunk():
    text = "a &amp; b\nc &amp; d\ne &amp; f\ng h"
    programs = [(0, 'normalize("&amp;", "&")'), (1, 'remove_lines(2, 2)\nnormalize("&amp;", "and")'),
                (3, 'normalize("&amp;", "&")')]
    result = refine(text, "keep_doc()", programs, min_words=0)
    assert (result.text, result.counts, result.errors) == (
        "a & b\nc and d\ng h", {"remove_lines": 1, "normalize": 2, "keep_chunk": 0, "lines_removed": 1},
        {"normalize_not_found": 1})


@pytest.mark.parametrize("answer, expected", [
    ("keep_doc()", ("keep", None)),
    ("drop_doc()", ("drop", None)),
    ("```python\ndrop_doc()\n```", ("drop", None)),
    ("  keep_doc()  \n\n", ("keep", None)),
    ("keep_doc()\nkeep_doc()", ("keep", None)),
    ("", (None, "empty")),
    (None, (None, "empty")),
    ("```\n```", (None, "empty")),
    ("keep_doc()\ndrop_doc()", (None, "conflicting")),
    ("The page is spam, so: drop_doc()", (None, "syntax")),
    ("drop_doc(); keep_doc()", (None, "syntax")),
    ("drop_doc", (None, "not_a_call")),
    ("drop_document()", (None, "unknown_function")),
    ("keep_chunk()", (None, "unknown_function")),
    ("drop_doc(reason='spam')", (None, "bad_arguments")),
    ("keep_doc()\n__import__('os').remove('x')", (None, "hostile")),
])
def test_doc_programs(answer, expected):
    assert parse_doc_program(answer) == expected


@pytest.mark.parametrize("original, refined, rules, expected", [
    (100, 5, {}, True),
    (100, 10, {}, True),
    (100, 11, {}, False),
    (400, 20, {}, True),
    (400, 21, {}, False),
    (0, 0, {}, True),
    (10, 5, {"min_fraction": 0.5, "min_words": 0}, True),
    (10, 6, {"min_fraction": 0.5, "min_words": 0}, False),
])
def test_the_document_drop_rule(original, refined, rules, expected):
    assert too_little_left(" ".join(["w"] * original), " ".join(["w"] * refined), **rules) is expected


def test_refinement_step_by_step_equals_refine_and_replay():
    chunks = line_chunks(number_lines(PAGE), 40, words)
    assert [first for first, _ in chunks] == [first for first, _ in PAGE_PROGRAMS]
    assert parse_doc_program("keep_doc()") == ("keep", None)
    lines, ends, out = PAGE.split("\n"), [3, 6, 9], []
    for (first, program), end in zip(PAGE_PROGRAMS, ends, strict=True):
        calls, parse_errors = parse_program(program)
        out += apply_program(lines[first:end], first, calls, parse_errors)[0]
    assert "\n".join(out) == PAGE_REFINED
    assert not too_little_left(PAGE, PAGE_REFINED)

    result = refine(PAGE, "keep_doc()", PAGE_PROGRAMS)
    assert (result.text, result.dropped, result.doc_reason, result.counts, result.errors) == (
        PAGE_REFINED, None, None, {"remove_lines": 3, "normalize": 2, "keep_chunk": 0, "lines_removed": 4}, {})
    stored = result.provenance.to_json()
    assert Provenance.from_json(stored) == Provenance("keep_doc()", tuple(PAGE_PROGRAMS))
    assert replay(PAGE, stored) == result


@pytest.mark.parametrize("doc_program, chunk_programs, text, dropped, doc_reason", [
    ("drop_doc()", [], None, "drop_doc", None),
    ("keep_doc()", [(0, "remove_lines(0, 2)"), (3, "remove_lines(3, 5)"), (6, "remove_lines(6, 7)")], None,
     "too_little_left", None),
    ("I think this page is fine.", [], PAGE, None, "syntax"),
    ("keep_doc()", [], PAGE, None, None),
])
def test_drops_and_unreadable_doc_programs_replay_the_same(doc_program, chunk_programs, text, dropped, doc_reason):
    result = refine(PAGE, doc_program, chunk_programs)
    assert (result.text, result.dropped, result.doc_reason) == (text, dropped, doc_reason)
    assert replay(PAGE, result.provenance.to_json()) == result


@pytest.mark.parametrize("firsts", [[1, 3], [0, 3, 3], [0, 9]])
def test_chunk_programs_must_follow_the_documents_lines(firsts):
    with pytest.raises(ValueError, match="chunk_programs: first lines"):
        refine(PAGE, "keep_doc()", [(first, "keep_chunk()") for first in firsts])
