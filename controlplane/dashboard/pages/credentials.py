"""A project's APNs and FCM credentials: upload (file picker or paste), replace, remove.

The secret halves never come back: the page shows what the API answers — the fingerprint,
the version (a replacement counts up) and the details (key id, team, topic, environment; the
FCM project and service account).
"""

from __future__ import annotations

from typing import Any

from starlette.responses import Response

from controlplane.api.bodies import NotJSON, load_json
from controlplane.api.credentials import CredentialList
from controlplane.dashboard.forms import text, upload_or_text
from controlplane.dashboard.page import View, dashboard_page
from controlplane.errors import APIError, InvalidRequest

NOTICES = {
    "apns_saved": "APNs key saved: new deliveries use it.",
    "fcm_saved": "FCM service account saved: new deliveries use it.",
    "apns_removed": "APNs key removed: iOS deliveries fail until another is uploaded.",
    "fcm_removed": "FCM service account removed: Android deliveries fail until another is "
    "uploaded.",
}


async def _page(view: View, status_code: int = 200, **context: Any) -> Response:
    credentials = await view.gateway.get(
        CredentialList, "/v1/credentials", project_id=view.project_id, mode=view.mode
    )
    by_provider = {credential.provider.value: credential for credential in credentials.data}
    return view.render(
        "credentials.html",
        status_code=status_code,
        credentials=by_provider,
        notice=NOTICES.get(view.request.query_params.get("notice", "")),
        **context,
    )


async def credentials(view: View) -> Response:
    return await _page(view)


async def upload(view: View) -> Response:
    provider = view.param("provider")
    form = await view.form()
    try:
        if provider == "apns":
            body: dict[str, Any] = {
                "key": await upload_or_text(form, "key_file", "key") or "",
                "key_id": text(form, "key_id") or "",
                "team_id": text(form, "team_id") or "",
                "topic": text(form, "topic") or "",
                "environment": text(form, "environment") or "",
            }
        elif provider == "fcm":
            raw = await upload_or_text(form, "service_account_file", "service_account")
            try:
                account = load_json((raw or "").encode("utf-8", "surrogatepass"))
            except NotJSON as exc:
                raise InvalidRequest(
                    f"service_account: not the JSON key file Firebase gives ({exc}).",
                    param="service_account",
                ) from None
            body = {"service_account": account}
        else:
            raise InvalidRequest("No such provider: apns or fcm.", param="provider")
        await view.project_run("PUT", f"/v1/credentials/{provider}", body=body)
    except APIError as error:
        return await _page(
            view, status_code=error.status_code, error=error, failed=provider,
            values={name: value for name, value in form.items()
                    if isinstance(value, str) and name in ("key_id", "team_id", "topic",
                                                           "environment")},
        )  # fmt: skip
    return view.redirect(view.frame.project_url("credentials") + f"?notice={provider}_saved")


async def remove(view: View) -> Response:
    provider = view.param("provider")
    if provider not in ("apns", "fcm"):
        raise InvalidRequest("No such provider: apns or fcm.", param="provider")
    await view.form()
    await view.project_run("DELETE", f"/v1/credentials/{provider}")
    return view.redirect(view.frame.project_url("credentials") + f"?notice={provider}_removed")


routes = [
    dashboard_page("/projects/{project_id}/{mode}/credentials", credentials),
    dashboard_page(
        "/projects/{project_id}/{mode}/credentials/{provider}", upload, methods=("POST",)
    ),
    dashboard_page(
        "/projects/{project_id}/{mode}/credentials/{provider}/remove", remove, methods=("POST",)
    ),
]
