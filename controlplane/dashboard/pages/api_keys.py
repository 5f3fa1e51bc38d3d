"""A project's API keys in the page's mode: create (the secret shown once), rename and change
scopes, roll (a new key with the same name and scopes, the old one revoked), revoke."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from starlette.responses import Response

from controlplane.api.api_keys import ApiKey, ApiKeyWithSecret
from controlplane.api.pagination import Page
from controlplane.auth.scopes import ALLOWED_SCOPES
from controlplane.dashboard.forms import text
from controlplane.dashboard.page import View, dashboard_page
from controlplane.errors import APIError
from controlplane.models import KeyKind

KEYS = "/v1/projects/{project_id}/api_keys"
KEY = KEYS + "/{api_key_id}"
EXPIRY_CHOICES = {"": None, "30d": 30, "90d": 90, "365d": 365}
NOTICES = {
    "revoked": "Key revoked: every API process refuses it from now on.",
    "updated": "Key updated.",
}


async def _page(
    view: View,
    *,
    error: APIError | None = None,
    created: ApiKeyWithSecret | None = None,
    status_code: int = 200,
    **context: Any,
) -> Response:
    keys = await view.gateway.get(
        Page[ApiKey],
        KEYS,
        params={"project_id": view.project_id},
        query={"mode": view.mode.value, "limit": "100"},
    )
    return view.render(
        "api_keys.html",
        status_code=status_code,
        keys=keys,
        created=created,
        error=error,
        scopes={kind.value: sorted(ALLOWED_SCOPES[kind]) for kind in KeyKind},
        expiry_choices=EXPIRY_CHOICES,
        notice=NOTICES.get(view.request.query_params.get("notice", "")),
        **context,
    )


async def api_keys(view: View) -> Response:
    if view.request.method == "GET":
        return await _page(view)
    form = await view.form()
    kind = text(form, "kind") or ""
    body: dict[str, Any] = {"name": text(form, "name") or "", "kind": kind, "mode": view.mode.value}
    chosen = [scope for scope in form.getlist("scopes") if isinstance(scope, str)]
    if chosen:
        body["scopes"] = chosen
    expiry = text(form, "expires_in") or ""
    if expiry not in EXPIRY_CHOICES:
        body["expires_at"] = expiry  # refused by the operation, named
    elif (days := EXPIRY_CHOICES[expiry]) is not None:
        body["expires_at"] = (datetime.now(UTC) + timedelta(days=days)).isoformat()
    try:
        created = await view.gateway.run(
            "POST", KEYS, params={"project_id": view.project_id}, body=body
        )
    except APIError as error:
        return await _page(view, error=error, status_code=error.status_code, form_values=body)
    assert isinstance(created, ApiKeyWithSecret)
    return await _page(view, created=created, status_code=201)


async def api_key_action(view: View) -> Response:
    """Revoke, roll or edit one key (``action`` in the form)."""
    form = await view.form()
    params = {"project_id": view.project_id, "api_key_id": view.param("api_key_id")}
    action = text(form, "action")
    try:
        if action == "revoke":
            await view.gateway.run("DELETE", KEY, params=params)
            return view.redirect(view.frame.project_url("api-keys") + "?notice=revoked")
        if action == "update":
            body: dict[str, Any] = {"name": text(form, "name") or ""}
            body["scopes"] = [s for s in form.getlist("scopes") if isinstance(s, str)]
            await view.gateway.run("PATCH", KEY, params=params, body=body)
            return view.redirect(view.frame.project_url("api-keys") + "?notice=updated")
        if action == "roll":
            old = await view.gateway.get(ApiKey, KEY, params=params)
            body = {"name": old.name, "kind": old.kind.value, "mode": old.mode.value,
                    "scopes": old.scopes}  # fmt: skip
            if old.expires_at is not None:  # the new key lasts no longer than the old one
                body["expires_at"] = old.expires_at.isoformat()
            created = await view.gateway.run(
                "POST", KEYS, params={"project_id": view.project_id}, body=body
            )
            assert isinstance(created, ApiKeyWithSecret)
            try:
                await view.gateway.run("DELETE", KEY, params=params)
            except APIError as error:
                return await _page(
                    view, created=created, error=error, status_code=error.status_code,
                    rolled_from=old,
                )  # fmt: skip
            return await _page(view, created=created, status_code=201, rolled_from=old)
    except APIError as error:
        return await _page(view, error=error, status_code=error.status_code)
    return await _page(view, status_code=400, error=APIError("Unknown action.", status_code=400))


routes = [
    dashboard_page("/projects/{project_id}/{mode}/api-keys", api_keys, methods=("GET", "POST")),
    dashboard_page(
        "/projects/{project_id}/{mode}/api-keys/{api_key_id}", api_key_action, methods=("POST",)
    ),
]
