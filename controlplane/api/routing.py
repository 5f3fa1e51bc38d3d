"""Declaring an API operation once: its route, who may call it, what it takes and returns.

Every ``/v1`` operation is an :class:`Operation`. The router built from it runs the same steps
in the same order for all of them, so no handler can forget one:

1. authenticate the caller (``Auth.ADMIN``: session cookie or personal access token;
   ``Auth.API_KEY``: project key; ``Auth.NONE``),
2. resolve the organization / project the path names and every other id in it, as the caller
   may see them (404 if not: ``controlplane/tenancy.py``),
3. check the role permission or key scope (403),
4. validate the query string and the JSON body (400),
5. run the handler — inside one database transaction unless it only reads — and render its
   pydantic result as JSON; work registered with ``call.after_commit`` (cache invalidation,
   enqueueing, mail) runs once the transaction has committed, and its failure never turns a
   committed change into a 500. What a handler did outside the database before the
   transaction committed (an APNs broadcast channel opened) it undoes with
   ``call.after_rollback``: that work runs when the transaction does not commit — the handler
   raised, or the commit itself failed after the handler returned.

The same declarations feed ``/v1/openapi.json`` (``controlplane/api/openapi.py``), so an
operation cannot exist without being documented.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError
from redis.exceptions import RedisError
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route
from tortoise.models import Model
from tortoise.transactions import in_transaction

from controlplane import audit, idempotency
from controlplane.api.bodies import parse_body, reject_unstorable_text, validation_error
from controlplane.auth.admin import AdminPrincipal, authenticate_admin
from controlplane.auth.api_key_cache import (
    EPOCH_BUMPS_AFTER_COMMIT,
    MAX_ENTRY_AGE_SECONDS,
    ApiKeyCache,
    invalidate_cached_keys,
)
from controlplane.auth.api_keys import KeyPrincipal, bearer_token
from controlplane.auth.permissions import Permission
from controlplane.auth.sessions import client_ip, user_agent
from controlplane.crypto import KeyRing
from controlplane.errors import (
    APIError,
    AuthenticationFailed,
    DependencyUnavailable,
    InvalidRequest,
    PermissionDenied,
    ServiceUnavailable,
)
from controlplane.models import User
from controlplane.plans import limits_for
from controlplane.rate_limits import refusal
from controlplane.settings import Settings
from controlplane.tenancy import Tenant, check_path_params, load_path_objects, resolve_tenant

logger = logging.getLogger(__name__)

ModelT = TypeVar("ModelT", bound=BaseModel)
RowT = TypeVar("RowT", bound=Model)
_READ_ONLY_METHODS = frozenset({"GET", "HEAD"})
Handler = Callable[["Call"], Awaitable[BaseModel | Response]]


class Auth(StrEnum):
    NONE = "none"
    ADMIN = "admin"
    API_KEY = "api_key"


@dataclass(frozen=True)
class Operation:
    method: str
    path: str
    handler: Handler
    summary: str
    tag: str
    auth: Auth = Auth.ADMIN
    permission: Permission | None = None
    scope: str | None = None
    body: type[BaseModel] | None = None
    query: type[BaseModel] | None = None
    response: type[BaseModel] | None = None
    status_code: int = 200
    description: str = ""
    transactional: bool = True
    idempotent: bool = False  # honours Idempotency-Key (controlplane/idempotency.py)
    instance_admin: bool = False  # superusers only, and they reach every organization
    secret_key_only: bool = False  # Auth.API_KEY: publishable keys (shipped in apps) get 403
    response_media_type: str = "application/json"
    # Statuses this operation answers beyond those every operation of its kind may (see
    # controlplane/api/openapi.py), with what each means here: {401: "Wrong password"}.
    errors: Mapping[int, str] = field(default_factory=dict, hash=False, compare=False)
    # Headers its success answers carry, with what each means: {"ETag": "…"}.
    response_headers: Mapping[str, str] = field(default_factory=dict, hash=False, compare=False)
    # A path name's JSON Schema where this operation takes less than tenancy.PATH_NAMES says
    # (a state key one may read but not write).
    path_schemas: Mapping[str, Mapping[str, Any]] = field(
        default_factory=dict, hash=False, compare=False
    )

    @property
    def operation_id(self) -> str:
        return self.handler.__name__


@dataclass
class Call:
    """Everything a handler gets: the request, the validated inputs, the caller, the tenant."""

    request: Request
    settings: Settings
    principal: AdminPrincipal | KeyPrincipal | None
    tenant_or_none: Tenant | None
    body: BaseModel | None
    query: BaseModel | None
    rows: dict[str, Model] = field(default_factory=dict)
    after_commit: list[Callable[[], Awaitable[None]]] = field(default_factory=list)
    # Undoing what the handler did outside the database, if its transaction does not commit.
    after_rollback: list[Callable[[], Awaitable[None]]] = field(default_factory=list)
    path_params: Mapping[str, Any] = field(default_factory=dict)

    @property
    def tenant(self) -> Tenant:
        assert self.tenant_or_none is not None, "operation has no organization in its path"
        return self.tenant_or_none

    @property
    def admin(self) -> AdminPrincipal:
        assert isinstance(self.principal, AdminPrincipal), "operation is not Auth.ADMIN"
        return self.principal

    @property
    def user(self) -> User:
        return self.admin.user

    @property
    def key(self) -> KeyPrincipal:
        assert isinstance(self.principal, KeyPrincipal), "operation is not Auth.API_KEY"
        return self.principal

    @property
    def origin(self) -> audit.Origin:
        """Where the request came from, as the audit log records it."""
        return request_origin(self.request)

    @property
    def keyring(self) -> KeyRing:
        """The encryption key ring, or 503 when ``BRIK_ENCRYPTION_KEYS`` is not configured."""
        keyring: KeyRing | None = self.request.app.state.keyring
        if keyring is None:
            raise ServiceUnavailable(
                "This needs BRIK_ENCRYPTION_KEYS to be configured.", code="encryption_disabled"
            )
        return keyring

    async def run_after_commit(self) -> None:
        """Run (once) the work registered with ``after_commit``. The router calls it after the
        operation's transaction; a handler with ``transactional=False`` after its own.

        The change is committed: follow-up work (enqueueing, mail, cache invalidation) must not
        turn its answer into a 500 — a client would retry a push that was accepted. A follow-up
        that has something to tell the client raises an APIError (forget_cached_keys' 503); any
        other failure is logged, and the rest still run.
        """
        callbacks, self.after_commit = self.after_commit, []
        told: APIError | None = None
        for callback in callbacks:
            try:
                await callback()
            except APIError as exc:
                told = told or exc
            except Exception:
                logger.exception("work after the commit failed; the change itself is committed")
        if told is not None:
            raise told

    async def run_after_rollback(self) -> None:
        """Run (once) the work registered with ``after_rollback``; the router calls it when
        the operation's transaction did not commit (the handler raised, or the commit failed).
        A handler with ``transactional=False`` runs its own transactions and undoes its own.

        Nothing it registered with ``after_commit`` will run. The client gets the error that
        rolled the change back, never one of this work's: a failure is logged, and the rest
        still run. A commit whose answer was lost (the connection dropped) may have happened
        after all: work that would break a committed change checks that it is not there.
        """
        callbacks, self.after_rollback = self.after_rollback, []
        for callback in callbacks:
            try:
                await callback()
            except Exception:
                logger.exception("undoing the work of a rolled-back change failed")

    def row(self, model: type[RowT], param: str) -> RowT:
        """The row the path parameter ``param`` names, already checked to be in reach."""
        row = self.rows[param]
        assert isinstance(row, model)
        return row

    def path_name(self, param: str) -> str:
        """The path parameter ``param`` that names something in the tenant's own namespace
        (``PATH_NAMES``: a state key, a widget kind), as the operation was given it — by the
        URL, or by a dashboard page that read it from a form."""
        return str(self.path_params[param])

    def body_as(self, model: type[ModelT]) -> ModelT:
        assert isinstance(self.body, model)
        return self.body

    def query_as(self, model: type[ModelT]) -> ModelT:
        assert isinstance(self.query, model)
        return self.query

    async def audit(
        self,
        action: str,
        *,
        target_type: str | None = None,
        target_id: str | None = None,
        organization_id: str | None = None,
        actor: audit.Actor | None = None,
        **details: Any,
    ) -> None:
        if organization_id is None and self.tenant_or_none is not None:
            organization_id = self.tenant_or_none.organization.id
        await audit.record(
            action,
            origin=self.origin,
            actor=actor or audit.Actor.of(self.principal),
            organization_id=organization_id,
            target_type=target_type,
            target_id=target_id,
            details=details,
        )


async def forget_cached_keys(call: Call) -> None:
    """Have every API process drop its cached keys: for a change that revokes or narrows one.

    Await it inside the handler, before the change is written. It tells every process now —
    when Redis cannot be reached that is a 503 and the transaction rolls back, so nothing is
    changed — and again once the change has committed, so what a process read from the
    database in between is dropped too. Should that second try fail, the change stands and
    the 503 says so: repeating the request tells them again
    (``controlplane/auth/api_key_cache.py``).
    """
    redis = call.request.app.state.redis
    try:
        await invalidate_cached_keys(redis)
    except RedisError:
        raise DependencyUnavailable.redis(
            "Redis is unavailable, and every API process must hear of this change to API keys "
            "before it is made: nothing was changed. Try again shortly."
        ) from None

    async def after_commit() -> None:
        try:
            await invalidate_cached_keys(redis, attempts=EPOCH_BUMPS_AFTER_COMMIT)
        except RedisError:
            raise DependencyUnavailable.redis(
                "The change was saved, but Redis became unavailable before every API process "
                "could hear of it: some may accept the old key for up to "
                f"{MAX_ENTRY_AGE_SECONDS:g} seconds. Repeat this request to finish it."
            ) from None

    call.after_commit.append(after_commit)


def request_origin(request: Request) -> audit.Origin:
    """Where ``request`` came from, as the audit log records it."""
    return audit.Origin(client_ip(request), user_agent(request))


def parse_query(request: Request, model: type[ModelT]) -> ModelT:
    """The query string as ``model``. A parameter given twice (``limit=10&limit=20``) is a 400
    naming it: silently using one of the values would answer a question nobody asked."""
    for name in dict.fromkeys(request.query_params.keys()):
        if len(request.query_params.getlist(name)) > 1:
            raise InvalidRequest(
                f"{name}: given more than once; give each query parameter once.",
                code="parameter_invalid",
                param=name,
            )
    return parse_query_values(dict(request.query_params), model)


def parse_query_values(values: Mapping[str, str], model: type[ModelT]) -> ModelT:
    """Query parameters (name → text) as ``model``, or 400 naming the first bad one."""
    values = dict(values)
    reject_unstorable_text(values)
    try:
        return model.model_validate(values)
    except ValidationError as exc:
        raise validation_error(exc) from None


def require_instance_admin(principal: AdminPrincipal | KeyPrincipal | None) -> None:
    if not isinstance(principal, AdminPrincipal) or not principal.user.is_superuser:
        raise PermissionDenied(
            "This needs an instance administrator (a superuser, as `brik-cloud bootstrap` "
            "creates).",
            code="instance_admin_required",
        )


async def _authenticate(
    request: Request, auth: Auth, settings: Settings
) -> AdminPrincipal | KeyPrincipal | None:
    if auth is Auth.ADMIN:
        return await authenticate_admin(request, settings)
    if auth is Auth.API_KEY:
        token = bearer_token(request.headers.get("authorization"))
        cache: ApiKeyCache = request.app.state.api_keys
        return await cache.authenticate(token)
    return None


# Where an operation's validated body comes from: the request (the HTTP API) or a dashboard
# form turned into JSON. Called only once the caller's identity and reach are checked, so a
# caller who may not do something hears 401/403/404, never a complaint about their body.
BodySource = Callable[[type[ModelT]], Awaitable[ModelT]]


def json_body_source(data: Mapping[str, Any]) -> BodySource[Any]:
    """A body given as JSON-ready values (a dashboard form), validated exactly as a request's
    body is: through its JSON text, strictly."""

    async def load(model: type[ModelT]) -> ModelT:
        reject_unstorable_text(dict(data))
        try:
            return model.model_validate_json(json.dumps(dict(data)), strict=True)
        except ValidationError as exc:
            raise validation_error(exc) from None

    return load


async def run_operation(request: Request, operation: Operation) -> Response:
    settings: Settings = request.app.state.settings
    principal = await _authenticate(request, operation.auth, settings)
    result = await execute(
        request,
        operation,
        principal,
        path_params=request.path_params,
        query=request,
        body=None,
        idempotency_key=request.headers.get("idempotency-key"),
    )
    return _render(result, operation)


async def execute(
    request: Request,
    operation: Operation,
    principal: AdminPrincipal | KeyPrincipal | None,
    *,
    path_params: Mapping[str, Any],
    query: Request | Mapping[str, str] | None,
    body: BodySource[Any] | None,
    idempotency_key: str | None = None,
) -> BaseModel | Response:
    """Run ``operation`` for ``principal``: every check of the module docstring, then the handler.

    The HTTP API passes the request itself as ``query`` and no ``body`` (both are read from the
    request); the dashboard passes a page's values (``controlplane/dashboard/``), so both go
    through the same checks, handlers and audit trail.
    """
    settings: Settings = request.app.state.settings
    if operation.instance_admin:
        require_instance_admin(principal)
    tenant = await resolve_tenant(principal, path_params, any_organization=operation.instance_admin)
    if isinstance(principal, KeyPrincipal) and tenant is not None:
        await _within_rate_limit(request, principal, tenant, settings)
    rows = await load_path_objects(principal, tenant, path_params)
    if operation.permission is not None:
        if tenant is None:
            raise AuthenticationFailed("This operation needs an organization member.")
        tenant.require(operation.permission)
    if operation.scope is not None and isinstance(principal, KeyPrincipal):
        principal.require(operation.scope)
    if operation.secret_key_only and isinstance(principal, KeyPrincipal):
        principal.require_secret()
    parsed_query = None
    if operation.query is not None:
        if isinstance(query, Request):
            parsed_query = parse_query(query, operation.query)
        else:
            parsed_query = parse_query_values(query or {}, operation.query)
    parsed_body: BaseModel | None = None
    if operation.body is not None:
        if body is None:
            parsed_body = await parse_body(request, operation.body)
        else:
            parsed_body = await body(operation.body)
    elif body is None and await request.body():
        raise InvalidRequest(
            f"{operation.method} {operation.path} takes no request body.",
            code="unexpected_body",
        )
    call = Call(request, settings, principal, tenant, parsed_body, parsed_query, rows,
                path_params=path_params)  # fmt: skip
    if operation.method in _READ_ONLY_METHODS or not operation.transactional:
        return await operation.handler(call)
    claimed = None
    key = idempotency_key
    # Keys are per project and mode; idempotent operations are API-key operations, and only a
    # key has a mode.
    if operation.idempotent and key is not None and tenant is not None and tenant.project:
        assert tenant.mode is not None, "idempotent operations take an API key"
        fingerprint = idempotency.request_fingerprint(
            operation.method,
            _concrete_path(operation.path, path_params),
            parsed_body.model_dump(mode="json") if parsed_body else None,
        )
        outcome = await idempotency.claim(tenant.project.id, tenant.mode, key, fingerprint)
        if isinstance(outcome, Response):
            return outcome
        claimed = outcome
    try:
        # A change commits whole or not at all, audit record and idempotent answer included.
        async with in_transaction():
            result = await operation.handler(call)
            if claimed is not None:
                response = _render(result, operation)
                if isinstance(response, JSONResponse):
                    await idempotency.complete(
                        claimed, response.status_code, json.loads(bytes(response.body))
                    )
    except BaseException:
        # Rolled back, by the handler or at the commit: undo what it did outside the database.
        await call.run_after_rollback()
        if claimed is not None:
            await idempotency.release(claimed)
        raise
    await call.run_after_commit()
    return result


def _concrete_path(template: str, path_params: Mapping[str, Any]) -> str:
    """The operation's path with its parameters filled in, as a client would have sent it."""
    return template.format_map({name: str(value) for name, value in path_params.items()})


async def _within_rate_limit(
    request: Request, principal: KeyPrincipal, tenant: Tenant, settings: Settings
) -> None:
    """Take this request's token (key and project buckets); 429 when either is empty.

    With Redis away the limiter answers from this process's own buckets: never fails open.
    """
    limits = limits_for(tenant.organization.plan, settings)
    decision = await request.app.state.rate_limiter.take(principal, limits)
    request.state.rate_limit_headers = decision.headers
    if not decision.allowed:
        raise refusal(decision, limits)


def _render(result: BaseModel | Response, operation: Operation) -> Response:
    if isinstance(result, Response):
        return result
    return JSONResponse(result.model_dump(mode="json"), status_code=operation.status_code)


class ApiRoute(Route):
    """One path and the operations on it; keeps them for the OpenAPI document and tests."""

    def __init__(self, path: str, operations: Sequence[Operation]) -> None:
        super().__init__(path, self._endpoint, methods=[op.method for op in operations], name=path)
        check_path_params(path, list(self.param_convertors))
        self.operations = {operation.method: operation for operation in operations}

    async def _endpoint(self, request: Request) -> Response:
        method = "GET" if request.method == "HEAD" else request.method
        try:
            response = await run_operation(request, self.operations[method])
        except APIError as exc:  # errors carry the rate-limit state too
            exc.headers = {**getattr(request.state, "rate_limit_headers", {}), **exc.headers}
            raise
        response.headers.update(getattr(request.state, "rate_limit_headers", {}))
        return response


def build_routes(operations: Sequence[Operation]) -> list[ApiRoute]:
    by_path: dict[str, list[Operation]] = {}
    for operation in operations:
        by_path.setdefault(operation.path, []).append(operation)
    return [ApiRoute(path, grouped) for path, grouped in by_path.items()]
