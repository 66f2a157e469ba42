"""How values look on the pages: times, durations, arguments (masked when asked), and
the overview's charts drawn as inline SVG (no script library, nothing fetched: the
dashboard works on a machine with no internet)."""

from __future__ import annotations

import ast
import datetime
import time
from collections.abc import Sequence
from typing import Any

from markupsafe import Markup, escape

from .history import BUCKET_SECONDS

__all__ = [
    "Masking",
    "ago",
    "bars_chart",
    "clock",
    "duration",
    "line_chart",
    "literal",
    "short",
    "uptime",
]

MASK = "•••"


def ago(timestamp: float | None, now: float | None = None) -> str:
    if not timestamp:
        return "-"
    seconds = (now or time.time()) - timestamp
    if seconds < 0:
        return "in " + _span(-seconds)
    if seconds < 1:
        return "just now"
    return _span(seconds) + " ago"


def _span(seconds: float) -> str:
    if seconds < 60:
        return f"{seconds:.0f} s"
    if seconds < 3600:
        return f"{seconds / 60:.0f} min"
    if seconds < 86400:
        return f"{seconds / 3600:.1f} h"
    return f"{seconds / 86400:.1f} d"


def uptime(since: float) -> str:
    return _span(max(0.0, time.time() - since))


def clock(timestamp: float | None) -> str:
    """An absolute time, UTC, to the millisecond (the pages show it on hover)."""
    if not timestamp:
        return "-"
    moment = datetime.datetime.fromtimestamp(timestamp, datetime.UTC)
    return moment.strftime("%Y-%m-%d %H:%M:%S.%f")[:-3] + " UTC"


def duration(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    if seconds < 0.001:
        return f"{seconds * 1e6:.0f} µs"
    if seconds < 1:
        return f"{seconds * 1000:.1f} ms"
    if seconds < 120:
        return f"{seconds:.2f} s"
    return _span(seconds)


def short(text: str | None, width: int = 80) -> str:
    if text is None:
        return ""
    return text if len(text) <= width else text[: width - 1] + "…"


class Masking:
    """``dashboard_mask_args``: False shows arguments; True hides every value; a list of
    keyword names hides those keyword arguments only (``["password", "token"]``).

    Events carry arguments as reprs; a repr that is not a Python literal (an object's,
    or one cut at 1024 characters) cannot be taken apart, so with names to hide it is
    hidden whole."""

    def __init__(self, setting: Any) -> None:
        if isinstance(setting, str):
            setting = [setting]
        self.everything = setting is True
        self.names = frozenset(setting) if isinstance(setting, list | tuple | set) else frozenset()

    @property
    def hides_anything(self) -> bool:
        return self.everything or bool(self.names)

    def args(self, stored: str | None) -> str:
        if not stored or not self.everything:
            return stored or ""
        values = literal(stored)
        if isinstance(values, list | tuple):
            return "(" + ", ".join([MASK] * len(values)) + ("," if len(values) == 1 else "") + ")"
        return MASK

    def kwargs(self, stored: str | None) -> str:
        if not stored or not self.hides_anything:
            return stored or ""
        values = literal(stored)
        if not isinstance(values, dict):
            return MASK
        shown = {
            k: MASK if self.everything or k in self.names else repr(v) for k, v in values.items()
        }
        return "{" + ", ".join(f"{k!r}: {v}" for k, v in shown.items()) + "}"

    def call(self, args: str | None, kwargs: str | None) -> str:
        """``1, 2, x=3``-like text for the task list."""
        shown_args = self.args(args)
        parts = [shown_args[1:-1].rstrip(",")] if shown_args[:1] in "([" and shown_args else []
        if shown_args and not parts:
            parts = [shown_args]
        shown_kwargs = self.kwargs(kwargs)
        values = literal(kwargs) if kwargs and not self.hides_anything else None
        if isinstance(values, dict):
            parts += [f"{k}={v!r}" for k, v in values.items()]
        elif shown_kwargs and shown_kwargs not in ("{}", ""):
            parts.append("**" + shown_kwargs)
        return ", ".join(p for p in parts if p)


def literal(text: str) -> Any:
    """A repr read back, or None when it is not a Python literal."""
    try:
        return ast.literal_eval(text)
    except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
        return None


# --- charts ---------------------------------------------------------------------------

WIDTH, HEIGHT, PAD = 600, 120, 4


def bars_chart(
    starts: Sequence[int], series: Sequence[tuple[str, str, Sequence[float]]], unit: str
) -> Markup:
    """Stacked bars, one per bucket: ``series`` is ``(label, css class, values)``."""
    count = max(1, len(starts))
    totals = [sum(values[i] for _, _, values in series) for i in range(len(starts))]
    top = max([*totals, 1e-9])
    step = WIDTH / count
    bars: list[str] = []
    for i, start in enumerate(starts):
        base = float(HEIGHT)
        label = [clock(start * BUCKET_SECONDS)[11:19]]
        for name, css, values in series:
            value = values[i]
            height = (HEIGHT - PAD) * value / top
            if height > 0:
                base -= height
                bars.append(
                    f'<rect class="{css}" x="{i * step + 0.5:.1f}" y="{base:.1f}" '
                    f'width="{max(step - 1, 1):.1f}" height="{height:.1f}"/>'
                )
            label.append(f"{name} {value:.3g}{unit}")
        bars.append(
            f'<rect class="hover" x="{i * step:.1f}" y="0" width="{step:.1f}" '
            f'height="{HEIGHT}"><title>{escape(" · ".join(label))}</title></rect>'
        )
    return _svg(bars, f"{top:.3g}{unit}")


def line_chart(starts: Sequence[int], values: Sequence[float | None], unit: str) -> Markup:
    count = max(1, len(starts))
    known = [v for v in values if v is not None]
    top = max([*known, 1e-9])
    step = WIDTH / count
    points: list[str] = []
    marks: list[str] = []
    for i, value in enumerate(values):
        if value is None:
            continue
        x = i * step + step / 2
        y = HEIGHT - (HEIGHT - PAD) * value / top
        points.append(f"{x:.1f},{y:.1f}")
        marks.append(
            f'<circle class="dot" cx="{x:.1f}" cy="{y:.1f}" r="2"><title>'
            f"{escape(clock(starts[i] * BUCKET_SECONDS)[11:19])} · {escape(duration(value))}"
            "</title></circle>"
        )
    shapes = [f'<polyline class="line" points="{" ".join(points)}"/>', *marks]
    return _svg(shapes, duration(top) if unit == "s" else f"{top:.3g}{unit}")


def _svg(shapes: list[str], top_label: str) -> Markup:
    grid = "".join(
        f'<line class="grid" x1="0" x2="{WIDTH}" y1="{y}" y2="{y}"/>'
        for y in (PAD, HEIGHT / 2, HEIGHT - 0.5)
    )
    return Markup(
        f'<svg class="chart" viewBox="0 0 {WIDTH} {HEIGHT}" preserveAspectRatio="none" '
        f'role="img">{grid}{"".join(shapes)}</svg>'
        f'<div class="chart-top">{escape(top_label)}</div>'
    )
