"""Bar charts drawn as SVG on the server: no JavaScript, no chart library, no CDN.

A chart is data — :class:`BarChart`: categories along the x axis (days) and one or more
:class:`Series` of whole numbers (live, test) — and :meth:`BarChart.svg` draws it as an inline
``<svg role="img">``. Its ``<title>`` and ``<desc>`` tell a screen reader what it shows and the
totals; each bar carries its own ``<title>`` (a tooltip on hover); the exact numbers go in a
table beside it (:meth:`BarChart.rows`, ``templates/_chart.html``), which is also what shows
when SVG cannot. Colours come from ``static/app.css`` (``.bar``, ``.bar-test`` …): the strict
Content-Security-Policy forbids inline style, and a stylesheet can restyle a chart for print
or high contrast.

Series are stacked (one bar per category, as tall as their sum) or grouped (side by side).
Heights are proportional to the values against an axis whose top is a round number; numbers of
any size are exact integers until the final division, so a huge count draws as well as a small.
"""

from __future__ import annotations

import xml.etree.ElementTree as ElementTree
from collections.abc import Sequence
from dataclasses import dataclass

from markupsafe import Markup

SVG_NAMESPACE = "http://www.w3.org/2000/svg"
GRIDLINES = 4  # the axis is split into about this many steps
MAX_TICK_LABELS = 11  # more categories than this: label every n-th one
MAX_BAR_SHARE = 1 / 12  # one bar (or group) never takes more of the width than this


@dataclass(frozen=True)
class Series:
    """One row of values, one per category; ``css_class`` colours its bars."""

    label: str
    values: Sequence[int]
    css_class: str = "bar"


@dataclass(frozen=True)
class Layout:
    """The drawing's size in SVG units (it scales to the page's width)."""

    width: int = 480  # narrow enough that its 10-unit text stays legible on a phone
    height: int = 220
    left: int = 56  # the y axis's label and numbers
    right: int = 10
    top: int = 28  # the legend
    bottom: int = 42  # the categories' labels and the x axis's label

    @property
    def plot_width(self) -> int:
        return self.width - self.left - self.right

    @property
    def plot_height(self) -> int:
        return self.height - self.top - self.bottom


@dataclass(frozen=True)
class BarChart:
    """What a chart shows. ``chart_id`` must be unique on the page (it names the title)."""

    chart_id: str
    title: str
    categories: Sequence[str]
    series: Sequence[Series]
    y_label: str
    x_label: str
    stacked: bool = True
    tick_labels: Sequence[str] | None = None  # shorter names under the bars (day numbers)
    layout: Layout = Layout()

    def __post_init__(self) -> None:
        if not self.series:
            raise ValueError("a chart needs at least one series")
        for series in self.series:
            if len(series.values) != len(self.categories):
                raise ValueError(
                    f"series {series.label!r} has {len(series.values)} values "
                    f"for {len(self.categories)} categories"
                )
            if any(value < 0 for value in series.values):
                raise ValueError(f"series {series.label!r}: bar charts draw counts (>= 0)")
        if self.tick_labels is not None and len(self.tick_labels) != len(self.categories):
            raise ValueError("tick_labels: one per category")

    def totals(self) -> list[int]:
        """Each category's sum over the series."""
        return [sum(values) for values in zip(*(s.values for s in self.series), strict=True)]

    def peak(self) -> int:
        """The largest bar: a category's total when stacked, else the largest single value."""
        if not self.categories:
            return 0
        if self.stacked:
            return max(self.totals())
        return max(max(series.values) for series in self.series)

    def rows(self) -> list[tuple[str, list[int]]]:
        """The table behind the chart: each category with its value in each series."""
        return [
            (category, [series.values[index] for series in self.series])
            for index, category in enumerate(self.categories)
        ]

    def description(self) -> str:
        """What a screen reader says about the chart: its span and each series' total."""
        if not self.categories:
            return f"{self.title}: no data."
        span = (
            self.categories[0]
            if len(self.categories) == 1
            else f"{self.categories[0]} to {self.categories[-1]}"
        )
        parts = []
        for series in self.series:
            total = sum(series.values)
            if total == 0:
                parts.append(f"{series.label}: none.")
                continue
            busiest = max(range(len(series.values)), key=lambda index: series.values[index])
            parts.append(
                f"{series.label}: {total:,} in total, most on {self.categories[busiest]} "
                f"({series.values[busiest]:,})."
            )
        return f"{self.title}, {span}. " + " ".join(parts)

    def svg(self) -> Markup:
        """The chart as inline SVG, safe to put in a page as is."""
        return bar_chart_svg(self)


def axis_scale(peak: int, steps: int = GRIDLINES) -> tuple[int, int]:
    """The y axis for bars up to ``peak``: ``(top, step)``, round numbers with
    ``top >= peak``, ``top`` a multiple of ``step`` and ``step`` 1, 2, 2.5 or 5 times a power
    of ten. Whole-number arithmetic throughout, so it holds for counts of any size."""
    if peak <= 0:
        return 1, 1
    rough = -(-peak // steps)  # ceil(peak / steps)
    magnitude = 10 ** (len(str(rough)) - 1)
    candidates = [magnitude, 2 * magnitude, 5 * magnitude, 10 * magnitude]
    if magnitude >= 10:
        candidates.insert(2, magnitude * 25 // 10)
    step = next(candidate for candidate in candidates if candidate >= rough)
    return step * -(-peak // step), step


def compact_number(value: int) -> str:
    """An axis label: 950, 1.5k, 12M, 3G … (the exact counts are in the table)."""
    scaled = float(value)
    for unit in ("", "k", "M", "G", "T", "P", "E"):
        if abs(scaled) < 1000:
            return f"{scaled:.1f}".removesuffix(".0") + unit if unit else str(value)
        scaled /= 1000
    return f"{value:.1e}"


def _number(value: float) -> str:
    """A coordinate, short: 12, 12.5, 12.34."""
    return f"{value:.2f}".rstrip("0").rstrip(".")


def _element(
    parent: ElementTree.Element, tag: str, text: str | None = None, **attributes: str | float
) -> ElementTree.Element:
    element = ElementTree.SubElement(
        parent,
        tag,
        {
            name.rstrip("_").replace("_", "-"): value if isinstance(value, str) else _number(value)
            for name, value in attributes.items()
        },
    )
    if text is not None:
        element.text = text
    return element


def bar_chart_svg(chart: BarChart) -> Markup:
    """Draw ``chart``: the axes with round gridlines, one bar per value, a legend when there
    is more than one series, and a title and description for assistive technology."""
    layout = chart.layout
    title_id, desc_id = f"{chart.chart_id}-title", f"{chart.chart_id}-desc"
    root = ElementTree.Element(
        "svg",
        {
            "xmlns": SVG_NAMESPACE,
            "class": "chart",
            "id": chart.chart_id,
            "viewBox": f"0 0 {layout.width} {layout.height}",
            "role": "img",
            "aria-labelledby": f"{title_id} {desc_id}",
        },
    )
    _element(root, "title", chart.title, id=title_id)
    _element(root, "desc", chart.description(), id=desc_id)

    top, step = axis_scale(chart.peak())
    plot_bottom = layout.top + layout.plot_height
    plot_right = layout.left + layout.plot_width

    def y_of(value: int) -> float:
        return plot_bottom - value / top * layout.plot_height

    grid = _element(root, "g", class_="grid")
    for tick in range(0, top + 1, step):
        y = y_of(tick)
        _element(grid, "line", x1=layout.left, x2=plot_right, y1=y, y2=y)
        _element(grid, "text", compact_number(tick), class_="tick", text_anchor="end",
                 x=layout.left - 6, y=y + 3.5)  # fmt: skip
    middle_y = _number(layout.top + layout.plot_height / 2)
    _element(root, "text", chart.y_label, class_="axis-label", text_anchor="middle",
             transform=f"translate(14 {middle_y}) rotate(-90)")  # fmt: skip
    _element(root, "text", chart.x_label, class_="axis-label", text_anchor="middle",
             x=layout.left + layout.plot_width / 2, y=layout.height - 6)  # fmt: skip

    bars = _element(root, "g", class_="bars")
    count = len(chart.categories)
    if count == 0:
        _element(root, "text", "No data yet", class_="empty", text_anchor="middle",
                 x=layout.left + layout.plot_width / 2, y=middle_y)  # fmt: skip
    band = layout.plot_width / max(count, 1)
    body = min(band * 0.72, layout.plot_width * MAX_BAR_SHARE)  # the rest is the gap
    labels = chart.tick_labels or chart.categories
    # Label every n-th category, so that labels neither crowd nor overlap (~6 units a letter).
    widest = max((len(label) for label in labels), default=0) * 6 + 6
    label_every = max(-(-count // MAX_TICK_LABELS), int(-(-widest // band)), 1)
    for index, category in enumerate(chart.categories):
        left = layout.left + index * band + (band - body) / 2
        stacked_below = 0
        for position, series in enumerate(chart.series):
            value = series.values[index]
            if chart.stacked:
                x, width = left, body
                low, high = stacked_below, stacked_below + value
                stacked_below = high
            else:
                width = body / len(chart.series)
                x, low, high = left + position * width, 0, value
            if value == 0:
                continue
            bar = _element(bars, "rect", class_=series.css_class, x=x, y=y_of(high),
                           width=width, height=y_of(low) - y_of(high))  # fmt: skip
            _element(bar, "title", f"{category} — {series.label}: {value:,}")
        if index % label_every == 0:
            _element(root, "text", labels[index], class_="tick", text_anchor="middle",
                     x=left + body / 2, y=plot_bottom + 14)  # fmt: skip
    _element(root, "line", class_="axis", x1=layout.left, x2=plot_right, y1=plot_bottom,
             y2=plot_bottom)  # fmt: skip

    if len(chart.series) > 1:
        legend = _element(root, "g", class_="legend")
        x = float(plot_right)
        for series in reversed(chart.series):
            x -= 8 + 7 * len(series.label)
            _element(legend, "rect", class_=series.css_class, x=x, y=8, width=10, height=10)
            _element(legend, "text", series.label, x=x + 14, y=17)
            x -= 14
    return Markup(ElementTree.tostring(root, encoding="unicode"))
