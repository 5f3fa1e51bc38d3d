"""A project's overview: this month's pushes against the plan's quota, delivery success,
devices, open Live Activities, what is waiting to go, the latest failures — and the last 7
days of analytics (``GET /v1/analytics/summary``): widget impressions and clicks per day,
events by platform, click-through rate per widget, push open rate and error rate, with the
raw events to download as CSV (``GET /v1/analytics/events.csv``, streamed)."""

from __future__ import annotations

from starlette.responses import Response

from controlplane.analytics.events import WIDGET_CLICK, WIDGET_IMPRESSION
from controlplane.api.analytics import AnalyticsSummary
from controlplane.api.stats import Stats
from controlplane.api.usage import Usage
from controlplane.dashboard.charts import BarChart, Series
from controlplane.dashboard.page import View, dashboard_page
from controlplane.errors import PermissionDenied

SUMMARY = "/v1/analytics/summary"
EXPORT = "/v1/analytics/events.csv"


def widget_chart(summary: AnalyticsSummary) -> BarChart:
    """Impressions and clicks per day, side by side."""
    days = summary.groups
    return BarChart(
        chart_id="chart-widget-days",
        title="Widget impressions and clicks per day",
        categories=[group.key or "" for group in days],
        tick_labels=[(group.key or "")[-2:].lstrip("0") for group in days],
        series=[
            Series("Impressions", [group.counts.get(WIDGET_IMPRESSION, 0) for group in days]),
            Series("Clicks", [group.counts.get(WIDGET_CLICK, 0) for group in days], "bar-alt"),
        ],
        y_label="Events",
        x_label="Day (UTC)",
        stacked=False,
    )


def platform_chart(summary: AnalyticsSummary) -> BarChart:
    """Every event of the window by platform (events that name none: "unknown")."""
    return BarChart(
        chart_id="chart-platforms",
        title="Events by platform",
        categories=[group.key or "unknown" for group in summary.groups],
        series=[Series("Events", [group.events for group in summary.groups])],
        y_label="Events",
        x_label="Platform",
    )


async def _analytics(view: View) -> tuple[AnalyticsSummary, AnalyticsSummary] | None:
    """The last 7 days by day and by platform; None for a role without analytics."""
    try:
        by_day = await view.gateway.get(
            AnalyticsSummary, SUMMARY, project_id=view.project_id, mode=view.mode,
            query={"period": "7d", "group_by": "day"},
        )  # fmt: skip
        by_platform = await view.gateway.get(
            AnalyticsSummary, SUMMARY, project_id=view.project_id, mode=view.mode,
            query={"period": "7d", "group_by": "platform"},
        )  # fmt: skip
    except PermissionDenied:
        return None
    return by_day, by_platform


async def overview(view: View) -> Response:
    stats = await view.gateway.get(Stats, "/v1/stats", project_id=view.project_id, mode=view.mode)
    usage: Usage | None = None
    try:  # the organization's meters: every role may read them
        usage = await view.gateway.get(
            Usage,
            "/v1/organizations/{organization_id}/usage",
            params={"organization_id": view.organization_id},
        )
    except PermissionDenied:
        usage = None
    meter = None
    if usage is not None:
        meter = usage.live.pushes if view.mode.value == "live" else usage.test.pushes
    analytics = await _analytics(view)
    charts = [widget_chart(analytics[0]), platform_chart(analytics[1])] if analytics else []
    return view.render(
        "overview.html", stats=stats, usage=usage, meter=meter,
        analytics=analytics[0] if analytics else None, charts=charts,
    )  # fmt: skip


async def export_events(view: View) -> Response:
    """Every raw event still kept, as CSV: the API's export, streamed to the browser."""
    result = await view.project_run("GET", EXPORT)
    assert isinstance(result, Response)
    return result


routes = [
    dashboard_page("/projects/{project_id}/{mode}", overview),
    dashboard_page("/projects/{project_id}/{mode}/analytics/events.csv", export_events),
]
