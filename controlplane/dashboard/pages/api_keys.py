"""A project's API keys in the page's mode: create (the secret shown once), rename and change
scopes, roll (a new key with the same name and scopes, the old one revoked), revoke.

Creating and rolling answer with the page that shows the new secret, not a redirect: the secret
is in that answer and nowhere else. So a reload of that page posts the form again; each form
carries the idempotency key it was drawn with (``controlplane/dashboard/forms.py``), claimed
for the page's project and mode as the API claims an ``Idempotency-Key``
(``controlplane/idempotency.py``), and a form sent again makes no second key: the page says
which key the form made, without its secret, which no store ever holds.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from typing import Any

from starlette.datastructures import FormData
from starlette.responses import Response
from tortoise.transactions import in_transaction

from controlplane import idempotency
from controlplane.api.api_keys import ApiKey, ApiKeyWithSecret
from controlplane.api.pagination import Page
from controlplane.auth.scopes import ALLOWED_SCOPES
from controlplane.dashboard.forms import idempotency_key, new_idempotency_key, text
from controlplane.dashboard.gateway import typed
from controlplane.dashboard.page import View, dashboard_page
from controlplane.errors import APIError, IdempotencyConflict, InvalidRequest
from controlplane.models import KeyKind

KEYS = "/v1/projects/{project_id}/api_keys"
KEY = KEYS + "/{api_key_id}"
EXPIRY_CHOICES = {"": None, "30d": 30, "90d": 90, "365d": 365}
NOTICES = {
    "revoked": "Key revoked: every API process refuses it from now on.",
    "updated": "Key updated.",
    "in_progress": "This form was already sent and is still being processed: it was not sent "
    "again.",
}


async def _page(
    view: View,
    *,
    error: APIError | None = None,
    created: ApiKeyWithSecret | None = None,
    status_code: int = 200,
    form_key: str | None = None,
    **context: Any,
) -> Response:
    """The list and the forms; ``form_key``: the idempotency key of a create form sent and
    refused, drawn again with its values (a new one otherwise)."""
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
        idempotency_key=form_key or new_idempotency_key(),
        new_idempotency_key=new_idempotency_key,
        **context,
    )


async def _once(
    view: View, form: FormData, request: dict[str, Any], make: Callable[[], Awaitable[ApiKey]]
) -> ApiKey:
    """``make`` a key once for the form, whatever number of times it is sent.

    The form's idempotency key is claimed with a fingerprint of ``request`` (what the form
    asks for); the key made is recorded with the claim, in the transaction that makes it, less
    its secret. Sent again, the form gets that key back (an :class:`ApiKey`, no secret) and
    ``make`` does not run. Raises :class:`IdempotencyConflict` while the first is still being
    processed. A form without a key, or from a member who may not make keys (the operation
    refuses them), runs ``make`` as it is.
    """
    key = idempotency_key(form)
    if key is None or not view.frame.can("api_keys:write"):
        return await make()
    fingerprint = idempotency.request_fingerprint("POST", view.request.url.path, request)
    claimed = await idempotency.claim(view.project_id, view.mode, key, fingerprint)
    if isinstance(claimed, Response):
        return typed(ApiKey, claimed)
    try:
        # The operation's own transaction nests in this one (a savepoint). It has no work for
        # after its commit: were one added, it would run before this one commits.
        async with in_transaction():
            made = await make()
            answer = ApiKey.model_validate(made.model_dump(exclude={"secret"}))
            await idempotency.complete(claimed, 201, answer.model_dump(mode="json"))
    except BaseException:
        await idempotency.release(claimed)
        raise
    return made


def _sent_again(error: APIError) -> bool:
    """The first of a form sent twice is still being processed (the second made nothing)."""
    return isinstance(error, IdempotencyConflict) and error.code == "idempotency_key_in_use"


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

    async def create() -> ApiKeyWithSecret:
        return await view.gateway.change(
            ApiKeyWithSecret, "POST", KEYS, params={"project_id": view.project_id}, body=body
        )

    # What the form asks for: its expiry as chosen, not the moment it works out to.
    asked = {**body, "scopes": sorted(chosen), "expires_in": expiry}
    asked.pop("expires_at", None)
    try:
        created = await _once(view, form, asked, create)
    except APIError as error:
        if _sent_again(error):
            return view.redirect(view.frame.project_url("api-keys") + "?notice=in_progress")
        # Drawn again with the same key (its claim was released), unless the key was the fault.
        form_key = None if isinstance(error, IdempotencyConflict) else idempotency_key(form)
        return await _page(
            view, error=error, status_code=error.status_code, form_values=body, form_key=form_key
        )
    if not isinstance(created, ApiKeyWithSecret):
        return await _page(view, already=created)
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

            async def roll() -> ApiKeyWithSecret:
                if old.revoked_at is not None:
                    raise InvalidRequest(
                        "A revoked key cannot be rolled: create a new key.", code="api_key_revoked"
                    )
                body = {"name": old.name, "kind": old.kind.value, "mode": old.mode.value,
                        "scopes": old.scopes}  # fmt: skip
                if old.expires_at is not None:  # the new key lasts no longer than the old one
                    body["expires_at"] = old.expires_at.isoformat()
                return await view.gateway.change(
                    ApiKeyWithSecret, "POST", KEYS, params={"project_id": view.project_id},
                    body=body,
                )  # fmt: skip

            created = await _once(view, form, {"action": "roll"}, roll)
            if not isinstance(created, ApiKeyWithSecret):
                return await _page(view, already=created, rolled_from=old)
            try:
                await view.gateway.run("DELETE", KEY, params=params)
            except APIError as error:
                return await _page(
                    view, created=created, error=error, status_code=error.status_code,
                    rolled_from=old,
                )  # fmt: skip
            return await _page(view, created=created, status_code=201, rolled_from=old)
    except APIError as error:
        if _sent_again(error):
            return view.redirect(view.frame.project_url("api-keys") + "?notice=in_progress")
        return await _page(view, error=error, status_code=error.status_code)
    return await _page(view, status_code=400, error=APIError("Unknown action.", status_code=400))


routes = [
    dashboard_page("/projects/{project_id}/{mode}/api-keys", api_keys, methods=("GET", "POST")),
    dashboard_page(
        "/projects/{project_id}/{mode}/api-keys/{api_key_id}", api_key_action, methods=("POST",)
    ),
]
