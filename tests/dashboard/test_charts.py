"""Bar charts as SVG: well-formed, proportional, readable by assistive technology, and sane
with no data and with numbers far past anything a month of pushes could reach."""

from __future__ import annotations

import xml.etree.ElementTree as ElementTree

import pytest
from markupsafe import Markup, escape

from controlplane.dashboard.charts import BarChart, Series, axis_scale, compact_number

SVG = "{http://www.w3.org/2000/svg}"


def daily(live: list[int], test: list[int] | None = None, *, stacked: bool = True) -> BarChart:
    days = [f"2025-05-{day:02d}" for day in range(1, len(live) + 1)]
    series = [Series("Live", live)]
    if test is not None:
        series.append(Series("Test", test, css_class="bar-test"))
    return BarChart(
        chart_id="pushes",
        title="Pushes per day",
        categories=days,
        series=series,
        y_label="Pushes",
        x_label="Day (UTC)",
        stacked=stacked,
        tick_labels=[day[-2:].lstrip("0") for day in days],
    )


def parse(chart: BarChart) -> ElementTree.Element:
    return ElementTree.fromstring(str(chart.svg()))


def bars(root: ElementTree.Element, css_class: str | None = None) -> list[ElementTree.Element]:
    return [
        rect
        for rect in root.iter(f"{SVG}rect")
        if rect.find(f"{SVG}title") is not None
        and (css_class is None or rect.get("class") == css_class)
    ]


def height(rect: ElementTree.Element) -> float:
    return float(rect.get("height", "0"))


def test_the_svg_is_well_formed_and_says_what_it_shows() -> None:
    chart = daily([3, 0, 12], [1, 1, 0])
    svg = chart.svg()
    assert isinstance(svg, Markup)  # safe to put in a template as is
    root = ElementTree.fromstring(str(svg))
    assert root.tag == f"{SVG}svg"
    assert root.get("role") == "img"
    assert root.get("aria-labelledby") == "pushes-title pushes-desc"
    title = root.find(f"{SVG}title")
    desc = root.find(f"{SVG}desc")
    assert title is not None
    assert title.get("id") == "pushes-title"
    assert title.text == "Pushes per day"
    assert desc is not None
    assert desc.get("id") == "pushes-desc"
    assert desc.text == (
        "Pushes per day, 2025-05-01 to 2025-05-03. "
        "Live: 15 in total, most on 2025-05-03 (12). Test: 2 in total, most on 2025-05-01 (1)."
    )
    texts = [text.text for text in root.iter(f"{SVG}text")]
    assert "Pushes" in texts
    assert "Day (UTC)" in texts
    assert {"Live", "Test"} <= set(texts)  # a legend for two series
    tooltips = [rect.findtext(f"{SVG}title") for rect in bars(root)]
    assert "2025-05-03 — Live: 12" in tooltips
    assert chart.rows() == [("2025-05-01", [3, 1]), ("2025-05-02", [0, 1]),
                            ("2025-05-03", [12, 0])]  # fmt: skip


def test_bar_heights_are_proportional_to_the_values() -> None:
    values = [5, 10, 20, 40]
    root = parse(daily(values))
    drawn = bars(root, "bar")
    assert len(drawn) == 4
    ratios = {round(height(rect) / value, 6) for rect, value in zip(drawn, values, strict=True)}
    assert len(ratios) == 1
    top, _ = axis_scale(40)
    plot_height = daily(values).layout.plot_height
    assert height(drawn[-1]) == pytest.approx(40 / top * plot_height, abs=0.01)


def test_stacked_series_sit_on_each_other_and_grouped_ones_side_by_side() -> None:
    stacked = parse(daily([30, 10], [10, 30]))
    live, test = bars(stacked, "bar"), bars(stacked, "bar-test")
    for live_bar, test_bar in zip(live, test, strict=True):
        assert live_bar.get("x") == test_bar.get("x")
        # The test bar starts where the live one ends.
        assert float(test_bar.get("y", 0)) + height(test_bar) == pytest.approx(
            float(live_bar.get("y", 0)), abs=0.02
        )
    # Both days total 40: equally tall stacks.
    assert height(live[0]) + height(test[0]) == pytest.approx(height(live[1]) + height(test[1]))

    grouped = parse(daily([30, 10], [10, 30], stacked=False))
    live, test = bars(grouped, "bar"), bars(grouped, "bar-test")
    assert float(live[0].get("x", 0)) < float(test[0].get("x", 0))
    assert height(live[0]) == pytest.approx(height(test[1]))


def test_an_empty_chart_still_draws_and_says_there_is_nothing() -> None:
    nothing = BarChart("empty", "Pushes per day", [], [Series("Live", [])], "Pushes", "Day")
    root = parse(nothing)
    assert bars(root) == []
    assert "No data yet" in [text.text for text in root.iter(f"{SVG}text")]
    assert root.findtext(f"{SVG}desc") == "Pushes per day: no data."

    zeros = parse(daily([0, 0, 0], [0, 0, 0]))
    assert bars(zeros) == []  # no zero-height rectangles
    assert zeros.findtext(f"{SVG}desc", "").endswith("Live: none. Test: none.")


def test_huge_numbers_draw_and_label_the_axis_compactly() -> None:
    huge = 10**21 + 7
    root = parse(daily([huge, huge // 2, 1]))
    drawn = bars(root, "bar")
    assert height(drawn[0]) == pytest.approx(2 * height(drawn[1]), abs=0.02)
    assert 0 < height(drawn[0]) <= daily([1]).layout.plot_height
    top, step = axis_scale(huge)
    assert top >= huge
    assert top % step == 0
    labels = [text.text for text in root.iter(f"{SVG}text") if text.get("class") == "tick"]
    assert all(label and len(label) <= 8 for label in labels), labels
    assert f"{huge:,}" in (root.findtext(f"{SVG}desc") or "")  # exact where it is read


@pytest.mark.parametrize(
    ("peak", "expected"),
    [(0, (1, 1)), (1, (1, 1)), (3, (3, 1)), (7, (8, 2)), (37, (40, 10)), (101, (150, 50)),
     (10_000, (10_000, 2_500)), (123_456, (150_000, 50_000))],
)  # fmt: skip
def test_the_axis_ends_on_a_round_number(peak: int, expected: tuple[int, int]) -> None:
    top, step = axis_scale(peak)
    assert (top, step) == expected
    assert top >= peak
    assert top % step == 0
    assert str(step).strip("0") in {"1", "2", "25", "5"}


def test_axis_labels_are_short() -> None:
    assert [compact_number(n) for n in (0, 950, 1000, 1500, 2_000_000, 12 * 10**9)] == [
        "0", "950", "1k", "1.5k", "2M", "12G",
    ]  # fmt: skip
    assert compact_number(10**30) == "1.0e+30"


def test_labels_are_escaped_and_many_days_are_labelled_sparsely() -> None:
    chart = BarChart("x", "<b>Pushes</b> & more", ["<script>"], [Series("A&B", [1])], "y", "x")
    svg = str(chart.svg())
    assert "<script>" not in svg
    assert "<b>" not in svg
    assert str(escape("<b>Pushes</b> & more")) in svg
    month = parse(daily(list(range(1, 32))))
    tick_texts = [t for t in month.iter(f"{SVG}text") if t.get("text-anchor") == "middle"
                  and t.get("class") == "tick"]  # fmt: skip
    assert 8 <= len(tick_texts) <= 16  # 31 days, but not 31 overlapping labels
    week = BarChart("w", "t", [f"2025-05-0{day}" for day in range(1, 8)],
                    [Series("s", [1] * 7)], "y", "x")  # fmt: skip
    labels = [t.text for t in parse(week).iter(f"{SVG}text") if t.get("class") == "tick"
              and t.get("text-anchor") == "middle"]  # fmt: skip
    assert labels == ["2025-05-01", "2025-05-03", "2025-05-05", "2025-05-07"]  # long: fewer


def test_a_series_of_the_wrong_length_or_a_negative_count_is_refused() -> None:
    with pytest.raises(ValueError, match="2 values for 3 categories"):
        BarChart("x", "t", ["a", "b", "c"], [Series("s", [1, 2])], "y", "x")
    with pytest.raises(ValueError, match="counts"):
        BarChart("x", "t", ["a"], [Series("s", [-1])], "y", "x")
