"""The one wrapper every dashboard page goes through.

It signs the visitor in from the session cookie (or sends them to the sign-in page, keeping
where they were going), refuses a form posted from another site (the API's own same-origin
check), builds the frame for the organization / project / mode in the path, and turns an
:class:`~controlplane.errors.APIError` the page lets through into an error page with the API's
message and status.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote, urlsplit

from starlette.datastructures import FormData
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import Route

from controlplane.auth.admin import AdminPrincipal, authenticate_admin
from controlplane.auth.sessions import SESSION_COOKIE
from controlplane.dashboard.forms import closes_form, read_form
from controlplane.dashboard.frame import MODES, Frame, build_frame
from controlplane.dashboard.gateway import Gateway
from controlplane.dashboard.rendering import error_page, render
from controlplane.errors import APIError, AuthenticationFailed, NotFound
from controlplane.models import KeyMode
from controlplane.settings import Settings

SIGN_IN = "/dashboard/sign-in"


@dataclass
class View:
    """What a page handler gets: the request, the gateway to the operations, the frame."""

    request: Request
    gateway: Gateway
    frame: Frame
    _form: FormData | None = None

    @property
    def settings(self) -> Settings:
        settings: Settings = self.request.app.state.settings
        return settings

    @property
    def mode(self) -> KeyMode:
        assert self.frame.mode is not None, "not a project page"
        return self.frame.mode

    @property
    def project_id(self) -> str:
        assert self.frame.project is not None, "not a project page"
        return self.frame.project.id

    @property
    def organization_id(self) -> str:
        assert self.frame.organization is not None, "not an organization page"
        return self.frame.organization.id

    def param(self, name: str) -> str:
        return str(self.request.path_params[name])

    async def form(self) -> FormData:
        if self._form is None:
            self._form = await read_form(self.request)
        return self._form

    async def project_run(self, method: str, path: str, **kwargs: Any) -> Any:
        """Run a tenant-API operation on this page's project, in this page's mode."""
        return await self.gateway.run(
            method, path, project_id=self.project_id, mode=self.mode, **kwargs
        )

    def render(
        self,
        template: str,
        status_code: int = 200,
        *,
        form_targets: Iterable[str] = (),
        **context: Any,
    ) -> Response:
        """The page; ``form_targets``: other sites its forms lead to (Stripe's pages)."""
        return render(
            self.request,
            template,
            {"frame": self.frame, **context},
            status_code=status_code,
            form_targets=form_targets,
        )

    def redirect(self, url: str) -> Response:
        """After a form succeeded: 303, so a reload does not post it again."""
        return RedirectResponse(url, status_code=303)


PageHandler = Callable[[View], Awaitable[Response]]


def _where_the_form_was(request: Request) -> str:
    """The page of this site a form was sent from (its ``Referer``), or the dashboard's start."""
    referer = urlsplit(request.headers.get("referer", ""))
    settings: Settings = request.app.state.settings
    ours = {
        (url.scheme, url.netloc)
        for url in map(urlsplit, (str(request.base_url), settings.public_base_url))
    }
    if (referer.scheme, referer.netloc) not in ours:
        return "/dashboard/"
    return referer.path + (f"?{referer.query}" if referer.query else "")


def sign_in_redirect(request: Request) -> Response:
    """To the sign-in page, which leads back here — or, for a form sent after the session ended
    (its address takes no GET), back to the page it was sent from."""
    if request.method in ("GET", "HEAD"):
        target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
    else:
        target = _where_the_form_was(request)
    return RedirectResponse(f"{SIGN_IN}?next={quote(target, safe='/')}", status_code=303)


async def signed_in_admin(request: Request) -> AdminPrincipal | None:
    """The admin the session cookie names, or None (no cookie, or the session ended). A form
    posted from another site is refused here (403), before anything runs."""
    if not request.cookies.get(SESSION_COOKIE):
        return None
    try:
        return await authenticate_admin(request, request.app.state.settings)
    except AuthenticationFailed:
        return None


def dashboard_page(path: str, handler: PageHandler, methods: tuple[str, ...] = ("GET",)) -> Route:
    """A signed-in page at ``/dashboard`` + ``path``."""

    async def endpoint(request: Request) -> Response:
        try:
            admin = await signed_in_admin(request)
        except APIError as error:  # a cross-site form
            return error_page(request, error, {"frame": None})
        if admin is None:
            return sign_in_redirect(request)
        gateway = Gateway(request, admin)
        frame: Frame | None = None
        try:
            mode = None
            if "mode" in request.path_params:
                raw = request.path_params["mode"]
                if raw not in {m.value for m in MODES}:
                    raise NotFound(f"No such mode: '{raw[:16]}' (test or live)", param="mode")
                mode = KeyMode(raw)
            frame = await build_frame(
                gateway,
                organization_id=request.path_params.get("organization_id"),
                project_id=request.path_params.get("project_id"),
                mode=mode,
            )
            return await handler(View(request, gateway, frame))
        except APIError as error:
            return error_page(request, error, {"frame": frame})

    return Route(
        "/dashboard" + path, closes_form(endpoint), methods=list(methods), name=handler.__name__
    )
