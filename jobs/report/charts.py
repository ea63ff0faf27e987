"""Hand-written SVG bar charts and the HTML page around them: no scripts, no fonts or files fetched."""

from __future__ import annotations

from html import escape

PALETTE = ("#4c78a8", "#e45756", "#72b7b2", "#f58518")
ROW_H, BAR_W, VALUE_W, CHAR_W = 22, 360, 300, 7
NONE = '<p class="none">Not in this run.</p>'
STYLE = """
body { font: 14px/1.4 system-ui, sans-serif; margin: 2em auto; padding: 0 1.5em; max-width: 1000px; color: #222; }
h1 { font-size: 1.5em; } h2 { font-size: 1.15em; margin-top: 2em; border-bottom: 1px solid #ddd; }
h3 { font-size: 1em; font-weight: normal; color: #555; }
table { border-collapse: collapse; } td, th { padding: 2px 12px; text-align: left; border-bottom: 1px solid #eee; }
td.value { text-align: right; font-variant-numeric: tabular-nums; }
p.none { color: #888; font-style: italic; }
svg text { font: 12px system-ui, sans-serif; fill: #222; }
"""


def bars(rows: list[tuple[str, list[float], str]], series: tuple[str, ...] = ("",)) -> str:
    """Horizontal bars, one per ``(label, values, text)``: the values stacked in ``series`` order, the text
    after the bar; a legend when there is more than one series."""
    label_w = CHAR_W * max((len(label) for label, _, _ in rows), default=0) + 12
    longest = max((sum(values) for _, values, _ in rows), default=0) or 1
    top = ROW_H if len(series) > 1 else 0
    colors = PALETTE[:len(series)]
    legend = [f'<rect x="{label_w + 110 * i}" y="5" width="12" height="12" fill="{color}"/>'
              f'<text x="{label_w + 110 * i + 16}" y="15">{escape(name)}</text>'
              for i, (name, color) in enumerate(zip(series, colors, strict=True))]
    parts = legend if top else []
    for i, (label, values, text) in enumerate(rows):
        y, x = top + i * ROW_H, float(label_w)
        segments = []
        for value, name, color in zip(values, series, colors, strict=True):
            width = BAR_W * value / longest
            segments.append(f'<rect x="{x:.1f}" y="{y + 3}" width="{width:.1f}" height="{ROW_H - 6}" fill="{color}">'
                            f'<title>{escape(name or label)}: {value:g}</title></rect>')
            x += width
        parts.append(f'<g class="row"><text class="label" x="{label_w - 6}" y="{y + 15}" text-anchor="end">'
                     f'{escape(label)}</text>{"".join(segments)}'
                     f'<text class="value" x="{x + 6:.1f}" y="{y + 15}">{escape(text)}</text></g>')
    width, height = label_w + BAR_W + VALUE_W, top + ROW_H * len(rows)
    return (f'<svg width="{width}" height="{height}" viewBox="0 0 {width} {height}" role="img">'
            f'{"".join(parts)}</svg>')


def table(rows: list[tuple[str, str, str]]) -> str:
    """The headline numbers: (stage, figure, value) rows."""
    body = "".join(f'<tr><td>{escape(stage)}</td><td>{escape(name)}</td><td class="value">{escape(value)}</td></tr>'
                   for stage, name, value in rows)
    return f"<table><tr><th>stage</th><th>figure</th><th>value</th></tr>{body}</table>"


def page(title: str, sections: list[tuple[str, str, list[tuple[str, str]]]]) -> str:
    """The whole page: ``(id, heading, [(caption, html), ...])`` sections; one with no parts says it is not
    in this run."""
    html = []
    for key, heading, parts in sections:
        body = "".join(f"<h3>{escape(caption)}</h3>{content}" if caption else content for caption, content in parts)
        html.append(f'<section id="{key}"><h2>{escape(heading)}</h2>{body or NONE}</section>')
    return (f'<!DOCTYPE html><html lang="en"><head><meta charset="utf-8"><title>{escape(title)}</title>'
            f'<style>{STYLE}</style></head><body><h1>{escape(title)}</h1>{"".join(html)}</body></html>')
