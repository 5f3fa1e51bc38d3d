"""How a dashboard page does anything: it runs a ``/v1`` operation for the signed-in admin.

Operations are found by their method and path template, exactly as ``/v1/openapi.json`` lists
them, and run through :func:`controlplane.api.routing.execute` — the router's own steps, so a
page can do nothing the same person could not do through the API. Operations of the tenant
API (devices, pushes …, ``Auth.API_KEY``) run as the member acting on one project in one mode
(:class:`~controlplane.auth.member_principal.MemberPrincipal`).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any, TypeVar

from pydantic import BaseModel
from starlette.requests import Request
from starlette.responses import Response

from controlplane.api.routing import Auth, Operation, execute, json_body_source
from controlplane.auth.admin import AdminPrincipal
from controlplane.auth.member_principal import acting_member
from controlplane.errors import APIError
from controlplane.models import KeyMode

ResultT = TypeVar("ResultT", bound=BaseModel)


class Gateway:
    """The operations a page may run, for ``admin`` (None: nobody is signed in)."""

    def __init__(self, request: Request, admin: AdminPrincipal | None) -> None:
        self.request = request
        self.admin = admin
        operations: list[Operation] = request.app.state.operations
        self._operations = {(op.method, op.path): op for op in operations}

    def operation(self, method: str, path: str) -> Operation:
        return self._operations[(method, path)]

    async def run(
        self,
        method: str,
        path: str,
        *,
        params: Mapping[str, str] | None = None,
        query: Mapping[str, str] | None = None,
        body: Mapping[str, Any] | None = None,
        project_id: str | None = None,
        mode: KeyMode | None = None,
        idempotency_key: str | None = None,
    ) -> BaseModel | Response:
        """Run one operation; its errors (``APIError``) propagate for the page to show.

        ``project_id`` and ``mode`` say which project's data, in which mode, a tenant-API
        operation acts on; ``params`` fills the path template.
        """
        operation = self.operation(method, path)
        principal: Any = None
        if operation.auth is Auth.ADMIN:
            principal = self.admin
        elif operation.auth is Auth.API_KEY:
            assert self.admin is not None, "a signed-in admin acts on project data"
            assert project_id is not None, "tenant-API operations need the project"
            assert mode is not None, "tenant-API operations need the mode"
            principal = await acting_member(self.admin, project_id, mode)
        return await execute(
            self.request,
            operation,
            principal,
            path_params=dict(params or {}),
            query={name: value for name, value in (query or {}).items() if value not in ("", None)},
            body=json_body_source(body or {}),
            idempotency_key=idempotency_key,
        )

    async def get(self, result_type: type[ResultT], path: str, **kwargs: Any) -> ResultT:
        """A read, typed: ``await gateway.get(Page[ApiKey], "/v1/…", params=…)``."""
        return typed(result_type, await self.run("GET", path, **kwargs))

    async def change(
        self, result_type: type[ResultT], method: str, path: str, **kwargs: Any
    ) -> ResultT:
        """A change, typed — also when it comes back as the first answer replayed for a repeated
        ``idempotency_key`` (a form sent twice), which is JSON like the API's."""
        return typed(result_type, await self.run(method, path, **kwargs))


def typed(result_type: type[ResultT], result: BaseModel | Response) -> ResultT:
    """An operation's result as ``result_type``. Some operations answer with a JSON response of
    their own (state entries carry an ``ETag`` header), and an idempotent replay is one: both
    are read back through the model, as a client would."""
    if isinstance(result, Response):
        if result.status_code >= 400:  # a refusal replayed for a repeated idempotency key
            raise replayed_error(result)
        return result_type.model_validate_json(bytes(result.body))
    # A generic page (Page[ApiKey]) is built as a plain Page: check against its origin.
    expected = result_type.__pydantic_generic_metadata__["origin"] or result_type
    assert isinstance(result, expected), (type(result), result_type)
    return result  # type: ignore[return-value]


def replayed_error(response: Response) -> APIError:
    """The API error a replayed answer carries, to show as the first send's was shown."""
    try:
        error = json.loads(bytes(response.body)).get("error") or {}
    except (ValueError, AttributeError):
        error = {}
    return APIError(
        str(error.get("message") or "The request was refused."),
        code=str(error.get("code") or "refused"),
        param=error.get("param") if isinstance(error.get("param"), str) else None,
        status_code=response.status_code,
    )
