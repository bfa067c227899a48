"""Charts drawn on the server as SVG: no script, no CDN, readable at 390 px.

Each chart is an `<svg data-testid="chart" role="img">` with a `<title>` and a `<desc>` that
say what it shows in words (screen readers read those, not the bars). The drawing is 360 units
wide, so on a phone it is shown at about its natural size and on a desk it scales up.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from decimal import Decimal

from markupsafe import Markup, escape

WIDTH = 360
ROW = 26
LABEL = 118
VALUE = 56
FONT = 12
_ids = itertools.count(1)
Number = int | float | Decimal


def _number(value: Number | None) -> str:
    if value is None:
        return "—"
    if isinstance(value, Decimal | float) and value != int(value):
        return f"{value:.1f}"
    return str(int(value))


def _open(title: str, description: str, height: int) -> tuple[str, str]:
    key = f"grafica-{next(_ids)}"
    head = (
        f'<svg data-testid="chart" class="grafica" role="img" viewBox="0 0 {WIDTH} {height}" '
        f'width="100%" preserveAspectRatio="xMinYMin meet" '
        f'aria-labelledby="{key}-t {key}-d" xmlns="http://www.w3.org/2000/svg">'
        f'<title id="{key}-t">{escape(title)}</title>'
        f'<desc id="{key}-d">{escape(description)}</desc>'
    )
    return head, "</svg>"


def bars(
    title: str,
    items: Sequence[tuple[str, Number | None]],
    *,
    unit: str = "",
    goal: Number | None = None,
    goal_label: str = "meta",
) -> Markup:
    """Horizontal bars, one per item, the value written at its end; an optional goal line."""
    height = max(1, len(items)) * ROW + (18 if goal is not None else 6)
    largest = max([float(v or 0) for _, v in items] + [float(goal or 0), 1.0])
    span = WIDTH - LABEL - VALUE
    said = ", ".join(f"{label}: {_number(value)}{unit}" for label, value in items) or "sin datos"
    head, tail = _open(title, said, height)
    parts = [head]
    if not items:
        parts.append(
            f'<text x="{WIDTH / 2}" y="{ROW - 8}" text-anchor="middle" font-size="{FONT}" '
            f'fill="#5f6b76">sin datos</text>'
        )
    for row, (label, value) in enumerate(items):
        y = row * ROW + 4
        length = span * float(value or 0) / largest
        short = label if len(label) <= 18 else label[:17] + "…"
        parts.append(
            f'<text x="{LABEL - 6}" y="{y + 14}" text-anchor="end" font-size="{FONT}" '
            f'fill="#1f2933">{escape(short)}</text>'
            f'<rect x="{LABEL}" y="{y}" width="{length:.1f}" height="{ROW - 8}" rx="3" '
            f'fill="#0b7a5c"/>'
            f'<text x="{LABEL + length + 4:.1f}" y="{y + 14}" font-size="{FONT}" '
            f'fill="#1f2933">{escape(_number(value))}{escape(unit)}</text>'
        )
    if goal is not None:
        x = LABEL + span * float(goal) / largest
        bottom = height - 14
        parts.append(
            f'<line x1="{x:.1f}" y1="0" x2="{x:.1f}" y2="{bottom}" stroke="#a61b1b" '
            f'stroke-dasharray="4 3"/>'
            f'<text x="{x:.1f}" y="{height - 2}" text-anchor="middle" font-size="{FONT - 1}" '
            f'fill="#a61b1b">{escape(goal_label)} {escape(_number(goal))}</text>'
        )
    parts.append(tail)
    # Every piece of text in `parts` went through escape(); the rest is our own markup.
    return Markup("".join(parts))  # noqa: S704


def columns(title: str, items: Sequence[tuple[str, Number]], *, every: int = 1) -> Markup:
    """Vertical columns (hours of the day, days of the week); every `every`-th label shown."""
    height = 150
    base = height - 20
    largest = max([float(v) for _, v in items] + [1.0])
    step = WIDTH / max(1, len(items))
    said = ", ".join(f"{label}: {_number(value)}" for label, value in items if value) or "sin datos"
    head, tail = _open(title, said, height)
    parts = [head, f'<line x1="0" y1="{base}" x2="{WIDTH}" y2="{base}" stroke="#d9dee3"/>']
    for index, (label, value) in enumerate(items):
        tall = (base - 16) * float(value) / largest
        x = index * step
        parts.append(
            f'<rect x="{x + 1:.1f}" y="{base - tall:.1f}" width="{max(step - 2, 1):.1f}" '
            f'height="{tall:.1f}" fill="#1d5fbf"/>'
        )
        if value:
            parts.append(
                f'<text x="{x + step / 2:.1f}" y="{base - tall - 3:.1f}" text-anchor="middle" '
                f'font-size="{FONT - 2}" fill="#1f2933">{escape(_number(value))}</text>'
            )
        if index % every == 0:
            parts.append(
                f'<text x="{x + step / 2:.1f}" y="{height - 5}" text-anchor="middle" '
                f'font-size="{FONT - 1}" fill="#5f6b76">{escape(label)}</text>'
            )
    parts.append(tail)
    # Every piece of text in `parts` went through escape(); the rest is our own markup.
    return Markup("".join(parts))  # noqa: S704
