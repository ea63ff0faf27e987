"""ProX program refinement (Zhou et al. 2024, "Programming Every Example", arXiv:2409.17115), engine-free.

Two stages; at each a small model writes a program that this module checks and runs:

* document level: the model reads the start of a document (``doc_input``) and answers ``keep_doc()`` or
  ``drop_doc()`` (``parse_doc_program``);
* chunk level: the document's lines are numbered across the whole document (``number_lines``: ``[000]first``,
  ``[001]second``, no space after the bracket; three digits, more for all lines when the document has over
  1,000) and packed into chunks of whole lines (``line_chunks``). For each chunk the model writes one call a
  line (``parse_program``): ``remove_lines(line_start=a, line_end=b)`` (both included, numbers as shown),
  ``normalize(source_str="x", target_str="y")`` (``target_str`` defaults to ``""``), ``keep_chunk()`` (ProX's
  project page calls it ``skip_chunk()``, accepted as the same); ``apply_program`` runs it on the chunk.

Model output is data, never code. Each line is parsed with ``ast.parse(line, mode="eval")`` into a syntax tree
that is only inspected, never compiled, evaluated or executed, and is accepted only as a call of a whitelisted
bare name with int/str literal arguments (positional or keyword). Blank lines and markdown fences are skipped;
``remove_lines`` numbers written with the zeros shown (``line_start=012``) are read as decimal, as ProX's
``int()`` reads them. A rejected line is counted by reason:

* ``syntax``: not a Python expression (or longer than ``MAX_LINE_CHARS``, never parsed);
* ``hostile``: attribute access, a dunder name, a nested call, lambda, comprehension, walrus, ``*``/``**``
  unpacking, a callee that is not a bare name, or a call of a Python builtin (``exec``, ``eval``, ``open`` ...);
* ``not_a_call``: an expression that is not a call (``keep_chunk``, ``"text"``, ``1 + 2``);
* ``unknown_function``: a call of any other name;
* ``bad_arguments``: unknown, repeated, missing or extra arguments, a non-literal or wrongly typed value
  (``True`` is not an int, ``10**12`` is not a literal), ``line_end < line_start``, a ``source_str`` of
  ``""`` or ``" "``.

Running a chunk's program (``apply_program``): every ``remove_lines`` first, on the chunk's own line numbers
(a range reaching outside the chunk is ``out_of_range`` and not applied, never clipped), then each
``normalize`` in order on the chunk's remaining lines joined by newlines (``normalize_not_found`` when the
source is not there; ``normalize_too_long`` when it would make the chunk over ``MAX_LINE_CHARS`` longer).
With ``max_errors`` (2) or more errors, parse and run together, the program is ignored and the chunk kept as
it was (``program_ignored``). After the chunks, ``too_little_left`` drops a document with 5 % or less of its
words, or 10 words or fewer, left. ``refine`` runs both stages from the programs; ``Provenance`` holds them and
``replay`` re-runs a refinement from its JSON.

Prompts: ``prox_doc`` and ``prox_chunk`` are our own instructions (chat messages; the chunk prompt's ``{text}``
is the numbered chunk). ProX's released models (``gair-prox/web-doc-refining-lm``,
``gair-prox/web-chunk-refining-lm``) were run by its reference code (GAIR-NLP/ProX,
``data_gen/tasks/apply_{doc,chunk}_refining.py``) as chat messages, not raw text: system "You are a helpful,
respectful and honest assistant.", user the plain document (doc) or ``[doc]\\n<numbered chunk>\\n[/doc]``
(chunk), through a chat template (the doc model through ``meta-llama/Llama-2-7b-chat-hf``'s, the chunk model
through its own tokenizer's, presumably the same Llama-2 format, which transformers then gave Llama tokenizers
without one), greedy decoding, at most 2,000 (doc) and 256 (chunk) new tokens. ``prox_doc_gair`` and
``prox_chunk_gair`` send exactly those messages: a recipe using those models takes them, with temperature 0 and
those token limits, and gives the engine a Llama-2 chat template if the tokenizer has none.

Where ProX's reference code (``utils/chunk_utils.py``, ``utils/doc_utils.py``) differs: it drops a document
whenever its doc program contains ``drop`` (we need exactly ``drop_doc()``; anything unreadable keeps the
document with a reason); it splits calls on ``,`` and ``)`` (strings holding them break) and expands each
range into a set (``10**12`` lines exhaust memory); it truncates the doc input with the chat template included
(2,000 tokens in all, so a long document loses the template's end); numbers lines ``[999]``, ``[1000]``
(minimum width 3, not widened for the document); joins the chunk programs and runs them once on the whole
document: ``normalize`` replaces everywhere, before the lines are removed, ``remove_lines`` clips a range past
the document's end, a missing ``normalize`` source is no error, ``keep_chunk``/``skip_chunk``/anything unknown
is silently ignored, and the 2-errors rule ignores the whole document's programs; its drop rule is the same
(``<= 1 - 0.95`` of the words or ``<= 10`` words), but the 10-word part also applies to the output of an
ignored program.
"""

from __future__ import annotations

import ast
import builtins
import itertools
import json
import re
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import NamedTuple

Count = Callable[[list[str]], list[int]]

MAX_LINE_CHARS = 10_000
MAX_ERRORS = 2
_REQUIRED = object()
# function -> its parameters in order: (name, type, default or _REQUIRED)
CHUNK_FUNCTIONS: dict[str, tuple] = {
    "remove_lines": (("line_start", int, _REQUIRED), ("line_end", int, _REQUIRED)),
    "normalize": (("source_str", str, _REQUIRED), ("target_str", str, "")),
    "keep_chunk": (),
    "skip_chunk": (),
}
DOC_FUNCTIONS: dict[str, tuple] = {"keep_doc": (), "drop_doc": ()}
COUNTS = ("remove_lines", "normalize", "keep_chunk", "lines_removed")

_FENCE = re.compile(r"```[\w+-]*")
_WORD = re.compile(r"\S+")
_LEADING_ZEROS = re.compile(r"(?<![\w.])0+(?=\d)")
_HOSTILE = (ast.Attribute, ast.Lambda, ast.ListComp, ast.SetComp, ast.DictComp, ast.GeneratorExp, ast.NamedExpr,
            ast.Starred, ast.Await, ast.Yield, ast.YieldFrom)
_BUILTINS = frozenset(dir(builtins))
_MAX_CHARS_PER_TOKEN = 64


class Call(NamedTuple):
    """One accepted call: the function's name and its arguments by parameter name, defaults filled in."""

    function: str
    args: dict[str, int | str]


def _fit(text: str, offsets: Sequence[int], budget: int, count: Count) -> int:
    """The largest offset in ``offsets`` (increasing) whose prefix of ``text`` fits ``budget`` tokens, else 0."""
    lo, hi, best = 0, len(offsets) - 1, 0
    while lo <= hi:
        mid = (lo + hi) // 2
        if count([text[:offsets[mid]]])[0] <= budget:
            best, lo = offsets[mid], mid + 1
        else:
            hi = mid - 1
    return best


def doc_input(text: str, budget_tokens: int, count: Count) -> str:
    """The start of ``text`` the doc-level model sees: at most ``budget_tokens`` tokens, cut after a word
    (inside the first word only when that word alone is over budget). A word is taken to be at least a token,
    so at most ``budget_tokens`` words are tried, with about log2(budget) calls of ``count``."""
    if count([text])[0] <= budget_tokens:
        return text
    ends = [m.end() for m in itertools.islice(_WORD.finditer(text), budget_tokens)]
    if cut := _fit(text, ends, budget_tokens, count):
        return text[:cut]
    limit = min(ends[0] if ends else len(text), _MAX_CHARS_PER_TOKEN * budget_tokens)
    return text[:_fit(text, range(1, limit + 1), budget_tokens, count)]


def number_lines(text: str) -> list[str]:
    """The document's lines (split on ``\\n``), each prefixed with its number: ``[000]first``, ``[001]...``;
    zero-padded to 3 digits, or to as many as the last number needs."""
    lines = text.split("\n")
    width = max(3, len(str(len(lines) - 1)))
    return [f"[{i:0{width}d}]{line}" for i, line in enumerate(lines)]


def line_chunks(lines: list[str], budget_tokens: int, count: Count) -> list[tuple[int, str]]:
    """Numbered lines (``number_lines``) packed greedily, in order, into chunks of at most ``budget_tokens``
    tokens (line sizes summed, as ProX does): ``(index of the chunk's first line, chunk text)``. A line over
    budget is a chunk of its own. The chunk's raw lines are ``text.split("\\n")[first:next first]``."""
    chunks: list[tuple[int, str]] = []
    current: list[str] = []
    start = used = 0
    for i, (line, size) in enumerate(zip(lines, count(lines), strict=True)):
        if current and used + size > budget_tokens:
            chunks.append((start, "\n".join(current)))
            current, used = [], 0
        if not current:
            start = i
        current.append(line)
        used += size
    if current:
        chunks.append((start, "\n".join(current)))
    return chunks


def _is_hostile(node: ast.AST, top: ast.AST) -> bool:
    return (isinstance(node, _HOSTILE) or (isinstance(node, ast.Call) and node is not top)
            or (isinstance(node, ast.Name) and node.id.startswith("__"))
            or (isinstance(node, ast.keyword) and node.arg is None))


def _bind(call: ast.Call, params: tuple) -> dict[str, int | str] | None:
    """The call's literal arguments by parameter name, defaults filled in; None if they do not fit."""
    if len(call.args) > len(params):
        return None
    given = [(params[i][0], arg) for i, arg in enumerate(call.args)] + [(k.arg, k.value) for k in call.keywords]
    types = {name: (type_, default) for name, type_, default in params}
    if len({name for name, _ in given}) != len(given):
        return None
    values: dict[str, int | str] = {}
    for name, node in given:
        if name not in types or not isinstance(node, ast.Constant) or type(node.value) is not types[name][0]:
            return None
        values[name] = node.value
    for name, (_, default) in types.items():
        if name not in values:
            if default is _REQUIRED:
                return None
            values[name] = default
    return values


def _sane(function: str, args: Mapping[str, int | str]) -> bool:
    if function == "remove_lines":
        return args["line_start"] <= args["line_end"]
    if function == "normalize":
        return args["source_str"] not in ("", " ")
    return True


def _parse_line(line: str, functions: Mapping[str, tuple]) -> Call | str:
    """One program line -> an accepted ``Call``, or the reason it was rejected."""
    if len(line) > MAX_LINE_CHARS:
        return "syntax"
    if line.startswith("remove_lines("):
        line = _LEADING_ZEROS.sub("", line)
    try:
        body = ast.parse(line, mode="eval").body
    except (SyntaxError, ValueError, RecursionError, MemoryError):
        return "syntax"
    if any(_is_hostile(node, body) for node in ast.walk(body)):
        return "hostile"
    if not isinstance(body, ast.Call):
        return "not_a_call"
    if not isinstance(body.func, ast.Name):
        return "hostile"
    name = body.func.id
    if name not in functions:
        return "hostile" if name in _BUILTINS else "unknown_function"
    args = _bind(body, functions[name])
    if args is None or not _sane(name, args):
        return "bad_arguments"
    return Call(name, args)


def _program_lines(answer: str | None) -> list[str]:
    return [s for line in (answer or "").splitlines() if (s := line.strip()) and not _FENCE.fullmatch(s)]


def parse_doc_program(answer: str | None) -> tuple[str | None, str | None]:
    """``("keep" | "drop", None)`` for an answer whose every line is the same ``keep_doc()`` or ``drop_doc()``,
    else ``(None, reason)``: ``empty``, a line's rejection reason, or ``conflicting`` (both)."""
    results = [_parse_line(line, DOC_FUNCTIONS) for line in _program_lines(answer)]
    if not results:
        return None, "empty"
    if rejected := next((r for r in results if isinstance(r, str)), None):
        return None, rejected
    decisions = {r.function for r in results}
    if len(decisions) > 1:
        return None, "conflicting"
    return decisions.pop().removesuffix("_doc"), None


def parse_program(answer: str | None) -> tuple[list[Call], dict[str, int]]:
    """A chunk program -> its accepted calls in order (``skip_chunk`` read as ``keep_chunk``), and the rejected
    lines counted by reason."""
    calls, errors = [], Counter()
    for line in _program_lines(answer):
        result = _parse_line(line, CHUNK_FUNCTIONS)
        if isinstance(result, str):
            errors[result] += 1
        else:
            calls.append(result._replace(function="keep_chunk") if result.function == "skip_chunk" else result)
    return calls, dict(errors)


def apply_program(lines: list[str], first: int, calls: Iterable[Call], parse_errors: Mapping[str, int] | None = None,
                  max_errors: int = MAX_ERRORS) -> tuple[list[str], dict[str, int], dict[str, int]]:
    """Run a chunk's calls on its raw ``lines`` (the first numbered ``first`` in the document):
    ``(new lines, counts, errors)``. Counts: calls applied by function and ``lines_removed`` (all 0 when the
    program is ignored); errors by reason, ``parse_errors`` included."""
    calls = list(calls)
    errors = Counter(parse_errors or {})
    counts = dict.fromkeys(COUNTS, 0)
    last = first + len(lines) - 1
    removed: set[int] = set()
    for call in calls:
        if call.function == "remove_lines":
            start, end = call.args["line_start"], call.args["line_end"]
            if start < first or end > last:
                errors["out_of_range"] += 1
                continue
            removed.update(range(start - first, end - first + 1))
            counts["remove_lines"] += 1
        elif call.function == "keep_chunk":
            counts["keep_chunk"] += 1
    original = "\n".join(lines)
    text = "\n".join(line for i, line in enumerate(lines) if i not in removed)
    for call in calls:
        if call.function != "normalize":
            continue
        source, target = call.args["source_str"], call.args["target_str"]
        found = text.count(source)
        if not found:
            errors["normalize_not_found"] += 1
        elif len(text) + found * (len(target) - len(source)) > len(original) + MAX_LINE_CHARS:
            errors["normalize_too_long"] += 1
        else:
            text = text.replace(source, target)
            counts["normalize"] += 1
    if errors.total() >= max_errors:
        errors["program_ignored"] += 1
        return list(lines), dict.fromkeys(COUNTS, 0), dict(errors)
    counts["lines_removed"] = len(removed)
    return (text.split("\n") if len(removed) < len(lines) else []), counts, dict(errors)


def too_little_left(original: str, refined: str, min_fraction: float = 0.05, min_words: int = 10) -> bool:
    """ProX's document rule: drop when ``min_fraction`` or less of the words, or ``min_words`` or fewer, remain."""
    left = len(refined.split())
    return left <= min_words or left <= min_fraction * len(original.split())


@dataclass(frozen=True)
class Provenance:
    """The programs a refinement ran: the doc program, and each chunk's (first line, program) in order."""

    doc_program: str
    chunk_programs: tuple[tuple[int, str], ...] = ()

    def to_json(self) -> str:
        return json.dumps({"doc_program": self.doc_program, "chunk_programs": [list(c) for c in self.chunk_programs]})

    @classmethod
    def from_json(cls, data: str) -> Provenance:
        d = json.loads(data)
        return cls(d["doc_program"], tuple((first, program) for first, program in d["chunk_programs"]))


@dataclass(frozen=True)
class Refinement:
    """A refined document: ``text`` (None when dropped, ``dropped`` saying why: ``drop_doc`` or
    ``too_little_left``), ``doc_reason`` when the doc program was unreadable (the document is then kept), the
    chunk counts and errors summed over chunks, and the provenance to replay it."""

    text: str | None
    dropped: str | None
    doc_reason: str | None
    counts: dict[str, int]
    errors: dict[str, int]
    provenance: Provenance


def refine(text: str, doc_program: str, chunk_programs: Sequence[tuple[int, str]] = (),
           min_fraction: float = 0.05, min_words: int = 10) -> Refinement:
    """Both stages from the model's answers: the doc program, then (when given, for a kept document) each
    chunk's program keyed by its first line as ``line_chunks`` made them, then ``too_little_left``."""
    provenance = Provenance(doc_program, tuple((first, program) for first, program in chunk_programs))
    counts, errors = Counter(dict.fromkeys(COUNTS, 0)), Counter()
    decision, doc_reason = parse_doc_program(doc_program)
    if decision == "drop":
        return Refinement(None, "drop_doc", None, dict(counts), {}, provenance)
    if not chunk_programs:
        return Refinement(text, None, doc_reason, dict(counts), {}, provenance)
    lines = text.split("\n")
    firsts = [first for first, _ in chunk_programs]
    if firsts[0] != 0 or firsts[-1] >= len(lines) or any(b <= a for a, b in itertools.pairwise(firsts)):
        raise ValueError(f"chunk_programs: first lines {firsts} must start at 0 and increase within the document")
    out: list[str] = []
    for (first, program), end in zip(chunk_programs, firsts[1:] + [len(lines)], strict=True):
        calls, parse_errors = parse_program(program)
        new, chunk_counts, chunk_errors = apply_program(lines[first:end], first, calls, parse_errors)
        out += new
        counts.update(chunk_counts)
        errors.update(chunk_errors)
    refined = "\n".join(out)
    if too_little_left(text, refined, min_fraction, min_words):
        return Refinement(None, "too_little_left", doc_reason, dict(counts), dict(errors), provenance)
    return Refinement(refined, None, doc_reason, dict(counts), dict(errors), provenance)


def replay(text: str, provenance_json: str, min_fraction: float = 0.05, min_words: int = 10) -> Refinement:
    """``refine`` again from a stored ``Provenance.to_json()``: the same output for the same text."""
    p = Provenance.from_json(provenance_json)
    return refine(text, p.doc_program, p.chunk_programs, min_fraction, min_words)
