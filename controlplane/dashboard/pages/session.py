"""Signing in and out, accepting an invitation, and finding one's way in (``/dashboard/``).

Sign-in runs the API's ``POST /v1/auth/login`` (throttling, lockout, audit) and hands its
session cookie to the browser; an invitation link (``/dashboard/accept-invitation#<token>``)
runs ``POST /v1/invitations/accept``. These forms are sent before there is a session, so no
cookie check stands between them and another site: each refuses a form another site posted
(:func:`~controlplane.auth.admin.refuse_cross_site`) — else that site could sign a person into
its own account (login CSRF) and read whatever they then set up there.
"""

from __future__ import annotations

from urllib.parse import urlencode

from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import Route

from controlplane.api.auth import LoginMethods, _local_path
from controlplane.api.invitations import AcceptedInvitation
from controlplane.auth.admin import refuse_cross_site
from controlplane.auth.sessions import SESSION_COOKIE
from controlplane.dashboard.forms import closes_form, read_form, text
from controlplane.dashboard.frame import build_frame
from controlplane.dashboard.gateway import Gateway
from controlplane.dashboard.page import SIGN_IN, View, dashboard_page, signed_in_admin
from controlplane.dashboard.rendering import error_page, render
from controlplane.errors import APIError, InvalidRequest, NotFound
from controlplane.models import KeyMode

NOTICES = {
    "signed_out": "You are signed out.",
    "invitation_accepted": "Invitation accepted: sign in to reach your new organization.",
    "password_changed": "Password changed: sign in again with the new one.",
}


def _next(value: str | None) -> str:
    return _local_path(value or "/dashboard/")


def _cross_site_refusal(request: Request) -> Response | None:
    """The error page for a form another site posted here, or None for our own."""
    try:
        refuse_cross_site(request, request.app.state.settings)
    except APIError as error:
        return error_page(request, error, {"frame": None})
    return None


async def _sign_in_page(
    request: Request, *, status_code: int = 200, error: APIError | None = None, **context: object
) -> Response:
    gateway = Gateway(request, None)
    methods = await gateway.get(LoginMethods, "/v1/auth/methods")
    headers = dict(error.headers) if error else {}
    return render(
        request,
        "sign_in.html",
        {
            "frame": None,
            "oidc": methods.oidc,
            "error": error,
            "dev_hint": request.app.state.settings.database_url.startswith("sqlite"),
            **context,
        },
        status_code=status_code,
        headers=headers,
    )


async def sign_in(request: Request) -> Response:
    next_url = _next(request.query_params.get("next"))
    if request.method == "GET":
        if await signed_in_admin(request) is not None:
            return RedirectResponse(next_url, status_code=303)
        notice = NOTICES.get(request.query_params.get("notice", ""))
        invited = (request.query_params.get("email") or "")[:320]  # after an invitation
        return await _sign_in_page(request, next=next_url, notice=notice, email=invited)
    if refusal := _cross_site_refusal(request):
        return refusal
    form = await read_form(request)
    next_url = _next(text(form, "next"))
    email = text(form, "email")
    try:
        result = await Gateway(request, None).run(
            "POST",
            "/v1/auth/login",
            body={"email": email or "", "password": form.get("password") or ""},
        )
    except APIError as error:
        return await _sign_in_page(
            request, status_code=error.status_code, error=error, next=next_url, email=email
        )
    assert isinstance(result, Response)
    response = RedirectResponse(next_url, status_code=303)
    for name, value in result.raw_headers:
        if name == b"set-cookie":
            response.raw_headers.append((name, value))
    return response


async def sign_out(request: Request) -> Response:
    if refusal := _cross_site_refusal(request):
        return refusal
    response = RedirectResponse(f"{SIGN_IN}?notice=signed_out", status_code=303)
    admin = await signed_in_admin(request)
    if admin is not None:
        result = await Gateway(request, admin).run("POST", "/v1/auth/logout")
        assert isinstance(result, Response)
        for name, value in result.raw_headers:
            if name == b"set-cookie":
                response.raw_headers.append((name, value))
    else:
        response.delete_cookie(SESSION_COOKIE, path="/")
    return response


async def accept_invitation(request: Request) -> Response:
    context: dict[str, object] = {"frame": None}
    if request.method == "GET":
        return render(request, "accept_invitation.html", context)
    if refusal := _cross_site_refusal(request):
        return refusal
    form = await read_form(request)
    body = {"token": text(form, "token") or ""}
    if name := text(form, "name"):
        body["name"] = name
    if (password := form.get("password")) and isinstance(password, str):
        body["password"] = password
    try:
        accepted = await Gateway(request, None).run("POST", "/v1/invitations/accept", body=body)
    except APIError as error:
        context.update(error=error, token=body["token"], name=body.get("name"))
        return render(request, "accept_invitation.html", context, status_code=error.status_code)
    assert isinstance(accepted, AcceptedInvitation)
    target = f"/dashboard/organizations/{accepted.organization_id}/projects"
    admin = await signed_in_admin(request)
    if admin is not None and admin.user.id == accepted.member.user_id:
        return RedirectResponse(target, status_code=303)
    if admin is not None:  # signed in here as someone else: they cannot reach it from here
        context.update(accepted=accepted, signed_in_as=admin.user.email)
        return render(request, "accept_invitation.html", context)
    query = urlencode(
        {"notice": "invitation_accepted", "email": accepted.member.email, "next": target}
    )
    return RedirectResponse(f"{SIGN_IN}?{query}", status_code=303)


async def home(view: View) -> Response:
    """``/dashboard/``: the first project of the first organization, or where to start."""
    for organization in view.frame.organizations:
        frame = await build_frame(view.gateway, organization_id=organization.id)
        if frame.projects:
            return view.redirect(f"/dashboard/projects/{frame.projects[0].id}/test")
        return view.redirect(f"/dashboard/organizations/{organization.id}/projects")
    return view.render("welcome.html")


async def switch(view: View) -> Response:
    """The switcher's form: ``to=organization:<id>`` or ``to=project:<id>`` (and the mode)."""
    kind, _, target = (view.request.query_params.get("to") or "").partition(":")
    mode = view.request.query_params.get("mode") or KeyMode.TEST.value
    if mode not in ("test", "live"):
        raise InvalidRequest("mode: test or live.", param="mode")
    if kind == "organization":
        await build_frame(view.gateway, organization_id=target)  # 404 if out of reach
        return view.redirect(f"/dashboard/organizations/{target}/projects")
    if kind == "project":
        await build_frame(view.gateway, project_id=target)
        return view.redirect(f"/dashboard/projects/{target}/{mode}")
    raise NotFound("Choose an organization or a project.", param="to")


async def root(_request: Request) -> Response:
    return RedirectResponse("/dashboard/", status_code=307)


routes = [
    Route("/", root, methods=["GET"]),
    Route(SIGN_IN, closes_form(sign_in), methods=["GET", "POST"]),
    Route("/dashboard/sign-out", sign_out, methods=["POST"]),
    Route("/dashboard/accept-invitation", closes_form(accept_invitation), methods=["GET", "POST"]),
    dashboard_page("/", home),
    dashboard_page("/switch", switch),
]
