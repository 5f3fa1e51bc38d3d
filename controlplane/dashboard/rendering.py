"""Turning a page's data into HTML: Jinja2 templates, security headers, error pages.

Templates autoescape everything; no page carries inline script or style, so the
Content-Security-Policy forbids both (``script-src 'self'``): an injected ``<script>`` in a device
tag or a push title is inert even if escaping were ever missed. Pages are never framed
(``frame-ancestors 'none'``) and never cached.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from datetime import datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from jinja2 import Environment, FileSystemLoader, select_autoescape
from starlette.requests import Request
from starlette.responses import HTMLResponse

from controlplane.errors import APIError
from controlplane.settings import Settings

TEMPLATES = Path(__file__).parent / "templates"


def _when(moment: datetime | None) -> str:
    """A moment as the tables show it: UTC, to the second."""
    if moment is None:
        return "—"
    return moment.strftime("%Y-%m-%d %H:%M:%S UTC")


def _number(value: int | float | None) -> str:
    if value is None:
        return "—"
    if isinstance(value, float):
        return f"{value:,.1f}"
    return f"{value:,}"


def _percent(value: float | None) -> str:
    return "—" if value is None else f"{value * 100:.1f} %"


def _pretty_json(value: Any) -> str:
    return json.dumps(value, indent=2, sort_keys=True, ensure_ascii=False, default=str)


def _size(count: int | None) -> str:
    """Bytes in the units the plans are sold in (1 GB = 10⁹ bytes)."""
    if count is None:
        return "—"
    if count < 1000:
        return f"{count:,} bytes"
    value = float(count)
    for unit in ("KB", "MB", "GB", "TB"):
        value /= 1000
        if value < 1000 or unit == "TB":
            break
    return f"{value:,.1f} {unit}"


environment = Environment(
    loader=FileSystemLoader(TEMPLATES),
    autoescape=select_autoescape(default=True, default_for_string=True),
    trim_blocks=True,
    lstrip_blocks=True,
)
environment.filters.update(
    when=_when, number=_number, percent=_percent, pretty_json=_pretty_json, size=_size
)


def _origin(url: str) -> str | None:
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}" if parts.scheme and parts.netloc else None


def content_security_policy(settings: Settings, form_targets: Iterable[str] = ()) -> str:
    """The policy of every dashboard page. ``form_targets``: other origins a form on the page
    may lead to (Stripe Checkout: a form's redirect target must be allowed too)."""
    targets = " ".join(sorted({origin for url in form_targets if (origin := _origin(url))}))
    return (
        "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
        "connect-src 'self'; font-src 'self'; base-uri 'none'; frame-ancestors 'none'; "
        f"form-action 'self'{' ' + targets if targets else ''}"
    )


def security_headers(settings: Settings, form_targets: Iterable[str] = ()) -> dict[str, str]:
    return {
        "Content-Security-Policy": content_security_policy(settings, form_targets),
        "X-Content-Type-Options": "nosniff",
        "Referrer-Policy": "same-origin",
        "X-Frame-Options": "DENY",
        "Cache-Control": "no-store",
    }


def render(
    request: Request,
    template: str,
    context: dict[str, Any],
    *,
    status_code: int = 200,
    form_targets: Iterable[str] = (),
    headers: dict[str, str] | None = None,
) -> HTMLResponse:
    settings: Settings = request.app.state.settings
    html = environment.get_template(template).render(
        request=request, path=request.url.path, **context
    )
    response = HTMLResponse(html, status_code=status_code)
    response.headers.update(security_headers(settings, form_targets))
    response.headers.update(headers or {})
    return response


def error_page(request: Request, error: APIError, context: dict[str, Any]) -> HTMLResponse:
    """An error as a page: the same message and code the API would answer."""
    return render(
        request,
        "error.html",
        {**context, "error": error},
        status_code=error.status_code,
        headers=dict(error.headers),
    )
