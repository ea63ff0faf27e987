"""How much of an output language ID must read: the first and last W characters against the whole text.

    python -m benchmarks.language_window

On every real dev page with text (lid.176): how often the label of :func:`operators.llm.assemble.language_sample`
equals the whole text's, and the CPU of each; then, for pages of 6,000 characters whose last share is a page
in another language (a model drifting), how many each flags as not the first language.
"""

from __future__ import annotations

import time

from benchmarks.real_pages import real_texts
from operators.filters.language import identify, load_model
from operators.llm.assemble import language_sample

WINDOWS = (None, 250, 500, 1000, 2000)
SHARES = (0.1, 0.2, 0.3, 0.5)
LENGTH = 6000


def main() -> None:
    model = load_model(None)
    texts = [t for t in real_texts() if len(t) > 200]
    labels: dict[int | None, list[str]] = {}
    print(f"{len(texts)} real pages, mean {sum(map(len, texts)) // len(texts)} characters")
    print("| window | label equal to the whole text's | CPU-s (lid.176) |")
    print("|---|---|---|")
    for window in WINDOWS:
        start = time.process_time()
        labels[window] = identify(model, [language_sample(t, window) for t in texts])[0]
        cpu = time.process_time() - start
        same = sum(a == b for a, b in zip(labels[None], labels[window], strict=True))
        print(f"| {window or 'whole text'} | {same} / {len(texts)} | {cpu:.3f} |")
    first: dict[str, str] = {}
    for text, label in zip(texts, labels[None], strict=True):
        if len(text) >= LENGTH:
            first.setdefault(label, text[:LENGTH])
    pairs = [(a, b) for a in first for b in first if a != b]
    print(f"\n{len(pairs)} drifting pages ({len(first)} languages: {', '.join(sorted(first))})")
    print("| last share in another language | " + " | ".join(f"flagged, {w or 'whole text'}" for w in WINDOWS) + " |")
    print("|---|" + "---|" * len(WINDOWS))
    for share in SHARES:
        cut = int(LENGTH * (1 - share))
        drifted = [first[a][:cut] + " " + first[b][: LENGTH - cut] for a, b in pairs]
        flagged = [sum(got != a for got, (a, _) in zip(identify(model, [language_sample(t, w) for t in drifted])[0],
                                                      pairs, strict=True)) for w in WINDOWS]
        print(f"| {share:.0%} | " + " | ".join(f"{f} / {len(pairs)}" for f in flagged) + " |")


if __name__ == "__main__":
    main()
