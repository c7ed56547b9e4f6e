"""Draw a trace as a timeline: one lane per server, coloured by role, with terms, crashes,
commits, message traffic and the network's faults.

Command line::

    python -m trioraft.testing.timeline trace.jsonl -o run.html

The input is a JSON lines trace as :class:`~trioraft.testing.TraceRecorder` writes it.
The output is one self-contained HTML file (inline SVG and a little CSS; no scripts, no
network) for a person to look at. Messages are aggregated into per-server histograms
and commits into ticks, so runs of tens of seconds and many thousands of events stay
readable. Hovering over a lane segment shows its role, term, leader and time span.
"""

from __future__ import annotations

import argparse
import html
import math
import os
import sys
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from ._timeline_model import (
    _CRASHED,
    _FAULT_COLOURS,
    _UNKNOWN,
    _duration,
    _Lane,
    _Model,
    _natural_key,
)
from ._trace import MESSAGE_KINDS, load_trace, parse_trace

__all__ = ["main", "render_timeline"]

#: Fill colour of each role in the lanes.
ROLE_COLOURS = {
    "follower": "#a9cce3",
    "pre_candidate": "#f7dc6f",
    "candidate": "#f39c12",
    "leader": "#1e8449",
}
_ROLE_LABELS = {
    "follower": "follower",
    "pre_candidate": "pre-candidate",
    "candidate": "candidate",
    "leader": "leader",
}
_OTHER_ROLE = "#c39bd3"
# Layout, in pixels.
_LEFT = 110  # lane labels
_RIGHT = 40
_LANE_H = 58
_TERM_Y = 11  # baseline of term labels, from the lane top
_BAR_Y, _BAR_H = 14, 20
_TICK_Y, _TICK_H = 36, 6
_HIST_Y, _HIST_H = 44, 11
_LABEL_ROW = 14
_NET_ROW = 13
_AXIS_H = 34
_CHAR_W = 6.0  # rough width of one character at 11px
_MAX_LABEL_ROWS = 6
_BUCKET_W = 6  # pixels per message histogram column


def _esc(value: Any) -> str:
    return html.escape(str(value), quote=True)


def _num(value: float) -> str:
    """A coordinate, short."""
    return f"{value:.1f}".rstrip("0").rstrip(".") if value != int(value) else str(int(value))


def _seconds(t: float) -> str:
    return f"{t:.3f} s"


def _nice_step(span: float, target: int) -> float:
    raw = span / max(target, 1)
    power = 10 ** math.floor(math.log10(raw)) if raw > 0 else 1.0
    for factor in (1, 2, 5, 10):
        if factor * power >= raw:
            return float(factor * power)
    return float(10 * power)


class _Svg:
    """Collects SVG elements as strings."""

    def __init__(self) -> None:
        self.parts: list[str] = []

    def add(self, text: str) -> None:
        self.parts.append(text)

    def rect(
        self, x: float, y: float, w: float, h: float, fill: str, title: str = "", **attrs: Any
    ) -> None:
        extra = "".join(f' {k.replace("_", "-")}="{_esc(v)}"' for k, v in attrs.items())
        body = f"<title>{_esc(title)}</title>" if title else ""
        tag = (
            f'<rect x="{_num(x)}" y="{_num(y)}" width="{_num(max(w, 0))}" '
            f'height="{_num(h)}" fill="{fill}"{extra}'
        )
        self.add(f"{tag}>{body}</rect>" if body else f"{tag}/>")

    def text(self, x: float, y: float, text: str, cls: str = "", **attrs: Any) -> None:
        extra = "".join(f' {k.replace("_", "-")}="{_esc(v)}"' for k, v in attrs.items())
        klass = f' class="{cls}"' if cls else ""
        self.add(f'<text x="{_num(x)}" y="{_num(y)}"{klass}{extra}>{_esc(text)}</text>')


class _Placer:
    """Puts labels in rows so that they do not overlap."""

    def __init__(self, rows: int) -> None:
        self.ends: list[float] = []
        self.rows = rows

    def place(self, x: float, width: float) -> int:
        for row, end in enumerate(self.ends):
            if x >= end:
                self.ends[row] = x + width
                return row
        if len(self.ends) < self.rows:
            self.ends.append(x + width)
            return len(self.ends) - 1
        row = min(range(len(self.ends)), key=self.ends.__getitem__)
        self.ends[row] = max(self.ends[row], x + width)
        return row


class _Drawing:
    """The SVG of one window ``[t_lo, t_hi]`` of a trace, drawn layer by layer."""

    def __init__(self, model: _Model, t_lo: float, t_hi: float, plot_w: float) -> None:
        self.model = model
        self.t_lo, self.t_hi = t_lo, t_hi
        self.span = t_hi - t_lo
        self.plot_w = plot_w
        self.names = sorted(model.lanes, key=_natural_key)
        self.svg = _Svg()
        # Fault labels, stacked in rows above the lanes so that they do not overlap.
        placer = _Placer(_MAX_LABEL_ROWS)
        self.labels: list[tuple[float, int, str, str, str]] = []
        for t, fault, label, details in model.faults:
            if not t_lo <= t <= t_hi:
                continue
            x = self.x(t)
            w = len(label) * _CHAR_W + 8
            row = placer.place(min(x, _LEFT + plot_w + _RIGHT - w), w)
            tip = f"{_seconds(t)}: {fault} {details}" if details else f"{_seconds(t)}: {fault}"
            self.labels.append((x, row, label, _FAULT_COLOURS.get(fault, "#555"), tip))
        self.net_y = 8 + len(placer.ends) * _LABEL_ROW + 2
        self.has_net = bool(model.loss or model.delay)
        self.top = self.net_y + (2 * _NET_ROW + 4 if self.has_net else 0) + 2
        self.bottom = self.top + len(self.names) * _LANE_H

    def x(self, t: float) -> float:
        """The x coordinate of time ``t`` (clamped to the window)."""
        return _LEFT + (min(max(t, self.t_lo), self.t_hi) - self.t_lo) / self.span * self.plot_w

    def visible(self, a: float, b: float) -> bool:
        return b >= self.t_lo and a <= self.t_hi

    def render(self) -> str:
        width = _LEFT + self.plot_w + _RIGHT
        height = self.bottom + _AXIS_H
        svg = self.svg
        svg.add(
            f'<svg xmlns="http://www.w3.org/2000/svg" width="{_num(width)}" '
            f'height="{_num(height)}" viewBox="0 0 {_num(width)} {_num(height)}">'
        )
        svg.add(
            "<defs>"
            '<pattern id="crashed" width="6" height="6" patternUnits="userSpaceOnUse" '
            'patternTransform="rotate(45)"><rect width="6" height="6" fill="#8c8c8c"/>'
            '<rect width="3" height="6" fill="#b3b3b3"/></pattern>'
            "</defs>"
        )
        self.axis()
        if self.has_net:
            self.network()
        histograms, peak = self.histograms()
        for i, name in enumerate(self.names):
            self.lane(self.model.lanes[name], self.top + i * _LANE_H, histograms[name], peak)
        self.fault_markers()
        svg.add("</svg>")
        return "".join(svg.parts)

    def axis(self) -> None:
        """Time ticks below the lanes, and a faint grid across them."""
        svg, t_lo, t_hi = self.svg, self.t_lo, self.t_hi
        step = _nice_step(self.span, max(4, int(self.plot_w // 90)))
        decimals = max(0, -math.floor(math.log10(step) + 1e-9))
        first = math.ceil(t_lo / step - 1e-9) * step
        axis_y = self.bottom + 4
        k = 0
        while first + k * step <= t_hi + 1e-9 and k < 1000:
            t = first + k * step
            k += 1
            x = _num(self.x(t))
            svg.add(f'<line x1="{x}" y1="{_num(self.top)}" x2="{x}" y2="{axis_y}" class="grid"/>')
            svg.add(f'<line x1="{x}" y1="{axis_y}" x2="{x}" y2="{axis_y + 5}" class="axis"/>')
            svg.text(self.x(t), axis_y + 17, f"{t:.{decimals}f}", "tick", text_anchor="middle")
        right = _num(_LEFT + self.plot_w)
        svg.add(f'<line x1="{_LEFT}" y1="{axis_y}" x2="{right}" y2="{axis_y}" class="axis"/>')
        svg.text(_LEFT + self.plot_w, axis_y + 30, "time (s)", "tick", text_anchor="end")

    def network(self) -> None:
        """Loss and delay, as bands in two rows above the lanes."""
        svg, y = self.svg, self.net_y
        svg.text(_LEFT - 8, y + _NET_ROW - 3, "loss", "small", text_anchor="end")
        svg.text(_LEFT - 8, y + 2 * _NET_ROW - 1, "delay", "small", text_anchor="end")
        for a, b, rate in self.model.loss:
            if self.visible(a, b):
                xa, xb = self.x(a), self.x(b)
                tip = f"message loss {rate:.0%} from {_seconds(a)} to {_seconds(b)}"
                colour = _FAULT_COLOURS["loss"]
                svg.rect(xa, y, xb - xa, _NET_ROW - 2, colour, tip, fill_opacity="0.85")
                if xb - xa > 50:
                    svg.text(xa + 3, y + _NET_ROW - 4, f"{rate:.0%}", "band")
        for a, b, low, high in self.model.delay:
            if self.visible(a, b):
                xa, xb = self.x(a), self.x(b)
                text = f"{_duration(low)}-{_duration(high)}"
                tip = f"message delay {text} from {_seconds(a)} to {_seconds(b)}"
                colour = _FAULT_COLOURS["delay"]
                svg.rect(xa, y + _NET_ROW, xb - xa, _NET_ROW - 2, colour, tip, fill_opacity="0.7")
                if xb - xa > len(text) * _CHAR_W + 6:
                    svg.text(xa + 3, y + 2 * _NET_ROW - 4, text, "band")

    def histograms(self) -> tuple[dict[str, tuple[list[int], list[int]]], int]:
        """Messages each server sent (and of those, dropped) per column of pixels, and
        the busiest column's count."""
        n = max(1, int(self.plot_w // _BUCKET_W))
        out: dict[str, tuple[list[int], list[int]]] = {}
        peak = 1
        for name in self.names:
            lane = self.model.lanes[name]
            sent, dropped = [0] * n, [0] * n
            for times, counts in ((lane.sent, sent), (lane.dropped, dropped)):
                for t in times:
                    if self.t_lo <= t <= self.t_hi:
                        counts[min(n - 1, int((t - self.t_lo) / self.span * n))] += 1
            out[name] = (sent, dropped)
            peak = max(peak, *sent)
        return out, peak

    def lane(
        self, lane: _Lane, y: float, histogram: tuple[list[int], list[int]], peak: int
    ) -> None:
        """One server's lane: fault bands, role spans, terms, commits, messages."""
        svg = self.svg
        svg.rect(_LEFT, y + 1, self.plot_w, _LANE_H - 2, "#f7f7f7")
        for a, b, members, colour, tip in self.model.bands:
            if lane.name in members and self.visible(a, b):
                xa, xb = self.x(a), self.x(b)
                tip = f"{tip}, {_seconds(a)} to {_seconds(b)}"
                svg.rect(xa, y + 1, max(xb - xa, 1), _LANE_H - 2, colour, tip, fill_opacity="0.18")
        svg.text(_LEFT - 8, y + _BAR_Y + 14, lane.name, "lane", text_anchor="end")
        shown = [index for t, index in lane.commits if t <= self.t_hi]
        if shown:
            svg.text(_LEFT - 8, y + _TICK_Y + 8, f"commit {shown[-1]}", "small", text_anchor="end")
        self.spans(lane, y)
        self.terms(lane, y)
        self.commits(lane, y)
        self.messages(lane, y, histogram, peak)

    def spans(self, lane: _Lane, y: float) -> None:
        svg = self.svg
        for a, b, state, term, leader in lane.spans:
            if not self.visible(a, b):
                continue
            xa = self.x(a)
            w = max(self.x(b) - xa, 1.5)  # even a brief candidacy stays visible
            tip = f"{lane.name}: {_ROLE_LABELS.get(state, state)}"
            if term is not None:
                tip += f", term {term}"
            if leader is not None and state != "leader":
                tip += f", leader {leader}"
            tip += f"  ({_seconds(a)} to {_seconds(b)}, {_duration(b - a)})"
            if state == _CRASHED:
                svg.rect(xa, y + 1, w, _LANE_H - 2, "#555555", fill_opacity="0.35")
                svg.rect(xa, y + _BAR_Y, w, _BAR_H, "url(#crashed)", tip)
                if w > 60:
                    svg.text(xa + w / 2, y + _BAR_Y + 14, "crashed", "crash", text_anchor="middle")
            elif state == _UNKNOWN:
                svg.rect(
                    xa,
                    y + _BAR_Y + 0.5,
                    w,
                    _BAR_H - 1,
                    "#ffffff",
                    tip,
                    stroke="#aaaaaa",
                    stroke_dasharray="3,2",
                )
            else:
                svg.rect(xa, y + _BAR_Y, w, _BAR_H, ROLE_COLOURS.get(state, _OTHER_ROLE), tip)
                if state == "leader" and w > 50:
                    svg.text(xa + 4, y + _BAR_Y + 14, "leader", "lead")

    def terms(self, lane: _Lane, y: float) -> None:
        """Term labels where the term changes, and the term in effect where the window
        starts at its left edge. Where labels would overlap the later term wins: they
        are placed from the right."""
        earlier = [(t, term) for t, term in lane.terms if t < self.t_lo]
        marks = [(t, term, False) for t, term in earlier[-1:]]
        marks += [(t, term, True) for t, term in lane.terms if self.t_lo <= t <= self.t_hi]
        next_start = math.inf
        for t, term, line in reversed(marks):
            x = self.x(t)
            if line:
                self.svg.add(
                    f'<line x1="{_num(x)}" y1="{_num(y + 3)}" x2="{_num(x)}" '
                    f'y2="{_num(y + _BAR_Y + _BAR_H)}" class="tline"/>'
                )
            text = f"T{term}"
            if x + 2 + len(text) * _CHAR_W + 6 <= next_start:
                self.svg.text(x + 2, y + _TERM_Y, text, "term")
                next_start = x

    def commits(self, lane: _Lane, y: float) -> None:
        """Commit ticks, one per two-pixel column that saw commits, as one path."""
        columns: dict[int, int] = {}
        for t, _ in lane.commits:
            if self.t_lo <= t <= self.t_hi:
                col = int(self.x(t) / 2)
                columns[col] = columns.get(col, 0) + 1
        if columns:
            path = "".join(f"M{col * 2 + 1},{_num(y + _TICK_Y)}v{_TICK_H}" for col in columns)
            self.svg.add(
                f'<path d="{path}" class="commit"><title>{_esc(lane.name)}: '
                f"{sum(columns.values())} commits shown, last index {lane.last_commit}, "
                f"{lane.applies} entries applied in all</title></path>"
            )

    def messages(
        self, lane: _Lane, y: float, histogram: tuple[list[int], list[int]], peak: int
    ) -> None:
        """A histogram of the messages the server sent (dropped ones in red), on a
        square-root scale so quiet periods stay visible next to election bursts."""
        base = y + _HIST_Y + _HIST_H
        step = self.plot_w / len(histogram[0])
        for counts, cls in zip(histogram, ("sent", "dropped"), strict=True):
            heights = [_num(max(1.0, math.sqrt(c / peak) * _HIST_H)) if c else "" for c in counts]
            path = "".join(
                f"M{_num(_LEFT + i * step)},{_num(base)}v-{h}h{_num(step)}v{h}z"
                for i, h in enumerate(heights)
                if h
            )
            if path:
                self.svg.add(
                    f'<path d="{path}" class="{cls}"><title>{_esc(lane.name)}: '
                    f"{len(lane.sent)} messages sent, {lane.received} received, "
                    f"{len(lane.dropped)} of its messages dropped</title></path>"
                )

    def fault_markers(self) -> None:
        """A dashed vertical line across every lane at each fault, labelled on top."""
        for x, row, label, colour, tip in self.labels:
            label_y = 8 + row * _LABEL_ROW
            self.svg.add(
                f'<line x1="{_num(x)}" y1="{_num(label_y + 2)}" x2="{_num(x)}" '
                f'y2="{_num(self.bottom)}" stroke="{colour}" class="fline">'
                f"<title>{_esc(tip)}</title></line>"
            )
            if x + 3 + len(label) * _CHAR_W > _LEFT + self.plot_w + _RIGHT:
                # Near the right edge: the label goes to the left of its marker.
                self.svg.text(x - 3, label_y + 10, label, "fault", fill=colour, text_anchor="end")
            else:
                self.svg.text(x + 3, label_y + 10, label, "fault", fill=colour)


def render_timeline(
    events: Iterable[Mapping[str, Any]],
    *,
    title: str = "trioraft timeline",
    width: int = 1200,
    start: float | None = None,
    end: float | None = None,
) -> str:
    """Draw trace ``events`` (dictionaries, as :func:`~trioraft.testing.load_trace`
    returns or :attr:`TraceRecorder.events <trioraft.testing.TraceRecorder.events>`
    holds) and return one self-contained HTML page.

    The page shows one lane per server: its role over time (coloured, with a legend),
    the term where it changes, crashed periods greyed, commits as ticks and a histogram
    of the messages it sent (dropped ones in red); the network's faults as labelled
    vertical markers, partitions and isolations as shaded bands over the lanes they
    cut off, loss and delay as bands in a "network" row; a time axis; and tables of
    leaders by term, faults and message counts. Hovering over a lane shows details.

    :param title: the page's heading.
    :param width: width in pixels of the time axis.
    :param start: first time shown (default: the first event's).
    :param end: last time shown (default: the last event's).
    """
    model = _Model([e for e in events if isinstance(e, Mapping)])
    t_lo = model.t_min if start is None else float(start)
    t_hi = model.t_max if end is None else float(end)
    if t_hi <= t_lo:
        t_hi = t_lo + 1.0
    drawing = _Drawing(model, t_lo, t_hi, float(max(200, width)))
    return _page(title, model, drawing.names, t_lo, t_hi, drawing.render())


_CSS = """
body { font: 14px/1.4 system-ui, -apple-system, "Segoe UI", sans-serif; margin: 16px 20px;
       color: #222; background: #fff; }
h1 { font-size: 20px; margin: 0 0 4px; }
h2 { font-size: 15px; margin: 18px 0 6px; }
.summary { color: #555; margin-bottom: 8px; }
.legend { display: flex; flex-wrap: wrap; gap: 4px 16px; margin: 8px 0 10px; font-size: 13px; }
.legend span { white-space: nowrap; }
.sw { display: inline-block; width: 22px; height: 12px; vertical-align: -1px;
      margin-right: 5px; border: 1px solid rgba(0,0,0,.25); }
.line { display: inline-block; width: 0; height: 14px; vertical-align: -2px;
        margin: 0 8px 0 4px; border-left: 2px dashed; }
.chart { overflow-x: auto; border: 1px solid #ddd; padding: 4px 0; }
svg text { font-family: system-ui, -apple-system, "Segoe UI", sans-serif; font-size: 11px; }
svg text.lane { font-size: 13px; font-weight: 600; fill: #222; }
svg text.small { font-size: 10px; fill: #777; }
svg text.tick { fill: #555; }
svg text.term { font-size: 10px; font-weight: 600; fill: #333; }
svg text.fault { font-weight: 600; }
svg text.band { font-size: 10px; fill: #fff; }
svg text.lead { font-size: 11px; fill: #fff; }
svg text.crash { font-size: 11px; fill: #fff; font-weight: 600; }
svg .grid { stroke: #e4e4e4; stroke-width: 1; }
svg .axis { stroke: #777; stroke-width: 1; }
svg .tline { stroke: #333; stroke-width: 1; }
svg .fline { stroke-width: 1.5; stroke-dasharray: 5,3; }
svg .commit { stroke: #1a237e; stroke-width: 1; fill: none; }
svg .sent { fill: #a6acaf; }
svg .dropped { fill: #e74c3c; }
table { border-collapse: collapse; font-size: 13px; margin-right: 24px; }
th, td { border-bottom: 1px solid #eee; padding: 2px 10px 2px 0; text-align: left; }
td.n { text-align: right; font-variant-numeric: tabular-nums; }
.tables { display: flex; flex-wrap: wrap; align-items: flex-start; gap: 8px 24px; }
.more { color: #777; font-size: 12px; }
"""

_MAX_ROWS = 200


def _legend() -> str:
    items = [
        f'<span><i class="sw" style="background:{ROLE_COLOURS[r]}"></i>{_ROLE_LABELS[r]}</span>'
        for r in ROLE_COLOURS
    ]
    items += [
        '<span><i class="sw" style="background:#fff;border:1px dashed #aaa"></i>'
        "unknown (not yet reported)</span>",
        '<span><i class="sw" style="background:repeating-linear-gradient(45deg,#8c8c8c 0 3px,'
        '#b3b3b3 3px 6px)"></i>crashed</span>',
        "<span><b>T3</b> term 3 begins</span>",
        '<span><i class="sw" style="background:#fff;border:0;border-left:1px solid #1a237e;'
        'width:6px"></i>commit</span>',
        '<span><i class="sw" style="background:#a6acaf"></i>messages sent</span>',
        '<span><i class="sw" style="background:#e74c3c"></i>messages dropped</span>',
        '<span><i class="sw" style="background:rgba(142,68,173,.25)"></i>partition group</span>',
        '<span><i class="sw" style="background:rgba(192,57,43,.25)"></i>isolated / cut off</span>',
    ]
    items += [
        f'<span><i class="line" style="border-color:{c}"></i>{k}</span>'
        for k, c in _FAULT_COLOURS.items()
    ]
    return '<div class="legend">' + "".join(items) + "</div>"


def _table(caption: str, header: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    if not rows:
        return ""
    out = [f"<div><h2>{_esc(caption)}</h2><table><tr>"]
    out += [f"<th>{_esc(h)}</th>" for h in header]
    out.append("</tr>")
    for row in rows[:_MAX_ROWS]:
        cells = "".join(
            f'<td class="n">{v:,}</td>' if isinstance(v, int) else f"<td>{_esc(v)}</td>"
            for v in row
        )
        out.append(f"<tr>{cells}</tr>")
    out.append("</table>")
    if len(rows) > _MAX_ROWS:
        out.append(f'<div class="more">and {len(rows) - _MAX_ROWS} more</div>')
    out.append("</div>")
    return "".join(out)


def _page(title: str, model: _Model, names: list[str], t_lo: float, t_hi: float, svg: str) -> str:
    counts = model.counts
    sent, delivered, dropped = (counts.get(k, 0) for k in MESSAGE_KINDS)
    clients = sum(model.lanes[name].client for name in names)
    servers = len(names) - clients
    summary = [
        f"{servers} server"
        + ("" if servers == 1 else "s")
        + (f", {clients} client" + ("" if clients == 1 else "s") if clients else ""),
        f"{t_lo:.3f} s to {t_hi:.3f} s",
        f"{len(model.leaders)} leader" + ("" if len(model.leaders) == 1 else "s") + " elected",
        f"{counts.get('role', 0):,} role changes",
        f"{counts.get('commit', 0):,} commits",
        f"{counts.get('apply', 0):,} applies",
        f"{sent:,} messages sent, {delivered:,} delivered, {dropped:,} dropped",
        f"{len(model.faults)} fault" + ("" if len(model.faults) == 1 else "s"),
        f"{model.crashes} crash" + ("" if model.crashes == 1 else "es"),
    ]
    leaders = [(term, name, f"{t:.3f}") for term, (name, t) in sorted(model.leaders.items())]
    faults = [(f"{t:.3f}", fault, label) for t, fault, label, _ in model.faults]
    types = [
        (name, c.get("send", 0), c.get("deliver", 0), c.get("drop", 0))
        for name, c in sorted(model.by_type.items())
    ]
    tables = "".join(
        [
            _table("Leaders", ("term", "leader", "elected at (s)"), leaders),
            _table("Faults", ("time (s)", "fault", "what"), faults),
            _table("Messages", ("type", "sent", "delivered", "dropped"), types),
        ]
    )
    return (
        "<!DOCTYPE html>\n"
        '<html lang="en"><head><meta charset="utf-8">'
        f"<title>{_esc(title)}</title><style>{_CSS}</style></head><body>\n"
        f"<h1>{_esc(title)}</h1>\n"
        f'<div class="summary">{_esc(" · ".join(summary))}</div>\n'
        f"{_legend()}\n"
        f'<div class="chart">{svg}</div>\n'
        f'<div class="tables">{tables}</div>\n'
        "</body></html>\n"
    )


def main(argv: Sequence[str] | None = None) -> int:
    """Command line entry point (``python -m trioraft.testing.timeline --help``).
    Returns the exit status."""
    parser = argparse.ArgumentParser(
        prog="python -m trioraft.testing.timeline",
        description=(
            "Draw a trioraft trace (JSON lines, as written by "
            "trioraft.testing.TraceRecorder) as a timeline in one self-contained HTML "
            "file: a lane per server coloured by role (follower, pre-candidate, "
            "candidate, leader) with term numbers, crashed periods greyed, commits as "
            "ticks, messages sent and dropped as histograms, and the network's faults "
            "(partition, isolate, heal, loss, delay) as labelled markers and bands."
        ),
        epilog="example: python -m trioraft.testing.timeline trace.jsonl -o run.html",
    )
    parser.add_argument("trace", help="the trace file (JSON lines); '-' reads standard input")
    parser.add_argument(
        "-o",
        "--output",
        help="the HTML file to write (default: the trace's name with .html; '-' for "
        "standard output)",
    )
    parser.add_argument("--title", help="the page's title (default: the trace's file name)")
    parser.add_argument(
        "--width",
        type=int,
        default=1200,
        help="width of the time axis in pixels (default: %(default)s); give more for long runs",
    )
    parser.add_argument("--start", type=float, help="first time to show, in seconds")
    parser.add_argument("--end", type=float, help="last time to show, in seconds")
    args = parser.parse_args(argv)
    try:
        stdin = args.trace == "-"
        events = parse_trace(sys.stdin, "<stdin>") if stdin else load_trace(args.trace)
    except (OSError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    name = "standard input" if args.trace == "-" else os.path.basename(args.trace)
    title = args.title if args.title is not None else f"trioraft timeline: {name}"
    page = render_timeline(events, title=title, width=args.width, start=args.start, end=args.end)
    output = args.output
    if output is None:
        if args.trace == "-":
            output = "-"
        else:
            root, _ = os.path.splitext(args.trace)
            output = root + ".html"
    if output == "-":
        sys.stdout.write(page)
    else:
        try:
            with open(output, "w", encoding="utf-8") as file:
                file.write(page)
        except OSError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 1
        print(f"wrote {output} ({len(events)} events)", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
