"""Which buckets a summary adds up: whole hours for short windows, whole days otherwise, and
nothing from before what is kept."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from controlplane.analytics.reading import Period, Window
from controlplane.models import Granularity

NOW = datetime(2031, 3, 10, 15, 42, 7, tzinfo=UTC)


def test_the_periods_are_whole_buckets_ending_now() -> None:
    day = Window.of(NOW, Period.DAY)
    assert (day.granularity, day.start, day.end) == (
        Granularity.HOUR, datetime(2031, 3, 9, 16, tzinfo=UTC), NOW,
    )  # fmt: skip  # 24 hours, this one included
    week = Window.of(NOW, Period.WEEK)
    assert (week.granularity, week.start) == (Granularity.DAY, datetime(2031, 3, 4, tzinfo=UTC))
    assert week.days() == [f"2031-03-{day:02d}" for day in range(4, 11)]
    assert Window.of(NOW, Period.MONTH).start == datetime(2031, 2, 9, tzinfo=UTC)
    assert day.days() == ["2031-03-09", "2031-03-10"]


def test_a_range_is_counted_by_hour_when_short_and_recent_else_by_day() -> None:
    short = Window.of(NOW, Period.WEEK, since=NOW - timedelta(hours=30, minutes=5))
    assert (short.granularity, short.start) == (
        Granularity.HOUR, datetime(2031, 3, 9, 9, tzinfo=UTC),
    )  # fmt: skip
    long = Window.of(NOW, Period.WEEK, since=NOW - timedelta(days=5))
    assert (long.granularity, long.start) == (Granularity.DAY, datetime(2031, 3, 5, tzinfo=UTC))
    old = NOW - timedelta(days=60)
    short_but_old = Window.of(NOW, Period.DAY, since=old, until=old + timedelta(hours=5))
    assert short_but_old.granularity is Granularity.DAY  # hourly rows are kept 35 days
    ancient = Window.of(NOW, Period.DAY, since=datetime(1999, 1, 1, tzinfo=UTC))
    assert ancient.start == datetime(2030, 2, 3, tzinfo=UTC)  # 400 days: nothing older is kept
    ending_at_midnight = Window.of(NOW, Period.WEEK, since=datetime(2031, 3, 1, tzinfo=UTC),
                                   until=datetime(2031, 3, 3, tzinfo=UTC))  # fmt: skip
    assert ending_at_midnight.days() == ["2031-03-01", "2031-03-02"]
