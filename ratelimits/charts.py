"""Geometry of the admin's 30-day spend chart; the template draws it as inline SVG
(no chart library, no CDN)."""

from __future__ import annotations

from dataclasses import dataclass

from .models import format_microdollars
from .selectors import DaySpend

WIDTH = 640
HEIGHT = 180
LEFT = 56
BOTTOM = 22
TOP = 8
GAP = 2


@dataclass(frozen=True)
class Bar:
    x: float
    y: float
    width: float
    height: float
    title: str


@dataclass(frozen=True)
class Label:
    x: float
    y: float
    text: str


@dataclass(frozen=True)
class SpendChart:
    width: int
    height: int
    plot_left: int
    plot_bottom: float
    bars: list[Bar]
    x_labels: list[Label]
    y_labels: list[Label]
    limit_y: float | None
    limit_label: str


def spend_chart(series: list[DaySpend], *, daily_limit: int) -> SpendChart:
    """Bars scaled to the larger of the busiest day and the daily limit (drawn as a line)."""
    plot_width = WIDTH - LEFT
    plot_height = HEIGHT - BOTTOM - TOP
    top_value = max([day.microdollars for day in series] + [daily_limit if daily_limit > 0 else 0, 1])
    slot = plot_width / max(len(series), 1)
    baseline = TOP + plot_height

    def y_of(value: int) -> float:
        return round(baseline - plot_height * value / top_value, 1)

    bars = []
    x_labels = []
    for index, day in enumerate(series):
        x = LEFT + index * slot
        height = round(plot_height * day.microdollars / top_value, 1)
        turns = "turn" if day.turn_count == 1 else "turns"
        title = f"{day.date.isoformat()}: {format_microdollars(day.microdollars)} ({day.turn_count} {turns})"
        bars.append(Bar(round(x + GAP / 2, 1), round(baseline - height, 1), round(slot - GAP, 1), height, title))
        if index % 5 == 0 or index == len(series) - 1:
            x_labels.append(Label(round(x + slot / 2, 1), HEIGHT - 6, day.date.strftime("%m-%d")))
    y_labels = [
        Label(LEFT - 6, baseline, format_microdollars(0)),
        Label(LEFT - 6, TOP + 10, format_microdollars(top_value)),
    ]
    limit_y = y_of(daily_limit) if daily_limit > 0 else None
    return SpendChart(
        width=WIDTH,
        height=HEIGHT,
        plot_left=LEFT,
        plot_bottom=baseline,
        bars=bars,
        x_labels=x_labels,
        y_labels=y_labels,
        limit_y=limit_y,
        limit_label=f"daily limit {format_microdollars(daily_limit)}" if daily_limit > 0 else "",
    )
