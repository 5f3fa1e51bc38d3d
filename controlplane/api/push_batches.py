"""``POST /v1/pushes/batch``: up to 500 independent pushes in one request, each with its own result.

What Expo's and FCM's users send: each message has its own content, its own recipients — ``to``
(device ids, user ids, tags, as ``POST /v1/pushes`` takes them) or ``device_token``, a raw
token — and its own ``idempotency_key``. Each is checked on its own: one that is malformed,
names a token of the other platform, needs a credential the project lacks or no longer fits
the month's quota is refused in its place in the answer, and the others are accepted. The
answer is 200 whenever the batch itself is well formed; ``results`` has one entry per
message, in order.

A raw token not registered yet is registered on the way (a device with no user id and no
tags, in the key's mode: how Expo's and gorush's users work), so its deliveries, their
outcomes and a dead token's invalidation are tracked like any other device's. A token already
registered is that device, as it is: a token a provider refused stays invalid until the app
registers it again (``POST /v1/devices``), and the message says it reached nobody.

Accepted messages are committed together — pushes, deliveries, quota, idempotent answers — in
one transaction of bulk statements (:func:`controlplane.sending.accept_pushes`), then handed
to the queue in one round trip; what a single push promises holds for each. A message's
``idempotency_key`` is claimed like an ``Idempotency-Key`` header (same namespace: per project
and mode, 24 hours): sent again with the same message, its first result is replayed
(``replayed: true``); with another message, it is refused with ``idempotency_key_reused``.
A refused message's key is released, so it can be sent again once fixed.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any, ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field, SkipValidation, ValidationError
from starlette.responses import JSONResponse
from tortoise.transactions import in_transaction

from controlplane import idempotency
from controlplane.api.bodies import (
    item_refusal,
    may_hold_unstorable_text,
    reject_unstorable_text,
    validation_error,
)
from controlplane.api.devices import DEVICE_FACTS, DeviceToken, devices_of_tokens
from controlplane.api.fields import Moment
from controlplane.api.pushes import (
    PushSent,
    Target,
    devices_named,
    sender_of,
    special_tokens,
    stamp_live_activity,
    warnings_of,
)
from controlplane.api.routing import Auth, Call, Operation
from controlplane.errors import APIError, InvalidRequest, PermissionDenied
from controlplane.fan_out import Destination
from controlplane.models import (
    TOKEN_COLUMNS,
    DeviceStatus,
    IdempotencyKey,
    Platform,
    TokenSlot,
)
from controlplane.payloads import ProviderCatalog, PushContent, check_sizes
from controlplane.sending import Outgoing, accept_pushes

MAX_MESSAGES = 500
BATCH_PATH = "/v1/pushes/batch"
_KEY_PATTERN = r"^[\x21-\x7e]{1,255}$"


class BatchMessage(PushContent):
    """One push of a batch: the content ``POST /v1/pushes`` takes, and whom it goes to."""

    to: Target | None = Field(
        default=None, description="Registered devices, as `POST /v1/pushes` takes them."
    )
    device_token: DeviceToken | None = Field(
        default=None,
        description="Or one raw device token (registered on the way if it is new).",
    )
    send_at: Moment | None = Field(default=None, description="Send later (cancellable until then).")
    idempotency_key: str | None = Field(
        default=None,
        pattern=_KEY_PATTERN,
        description="This message's own idempotency key (1 to 255 printable ASCII characters): "
        "sent again, its first result is replayed instead of a second push.",
    )


class PushBatch(BaseModel):
    model_config = ConfigDict(extra="forbid")
    # The messages' text is checked one by one too (controlplane/api/bodies.py).
    ITEMS_CHECKED_ALONE: ClassVar[str] = "messages"
    messages: list[SkipValidation[BatchMessage | dict[str, Any]]] = Field(
        min_length=1,
        max_length=MAX_MESSAGES,
        description=f"1 to {MAX_MESSAGES} messages, each a JSON object checked on its own "
        "against `BatchMessage`, with exactly one of `to` and `device_token`: a message that "
        "fails is refused in its place in `results`, and the others are sent.",
    )


class MessageError(BaseModel):
    type: str
    code: str = Field(
        description="As the same problem on `POST /v1/pushes` (`parameter_invalid`, "
        "`payload_too_large`, `credential_missing`, `quota_exceeded`, "
        "`idempotency_key_reused`, …), or `duplicate_idempotency_key` within one batch."
    )
    message: str
    param: str | None = Field(description="What is wrong with it: `messages.3.alert.title`.")


class MessageResult(BaseModel):
    index: int = Field(description="The message's position in `messages`, from 0.")
    status: Literal["accepted", "refused"]
    push: PushSent | None = Field(default=None, description="The accepted push.")
    replayed: bool = Field(
        default=False, description="This is the first result for its `idempotency_key`."
    )
    error: MessageError | None = Field(default=None, description="Why it was refused.")


class PushBatchResult(BaseModel):
    object: Literal["push_batch"] = "push_batch"
    accepted: int = Field(description="Messages accepted (replayed ones included).")
    refused: int
    results: list[MessageResult] = Field(description="One per message, in order.")


class _Message:
    """A message that passed its own checks, on its way through the batch."""

    __slots__ = ("claim", "content", "fingerprint", "index", "parsed")

    def __init__(self, index: int, parsed: BatchMessage, content: PushContent, raw: Any) -> None:
        self.index = index
        self.parsed = parsed
        self.content = content
        self.claim: IdempotencyKey | None = None
        self.fingerprint = (
            idempotency.request_fingerprint("POST", BATCH_PATH, raw)
            if parsed.idempotency_key is not None else ""
        )  # fmt: skip

    @property
    def target_param(self) -> str:
        return "to" if self.parsed.to is not None else "device_token"


Result = dict[str, Any]  # a MessageResult, built as JSON (500 models cost more than the work)


def _refused(index: int, error: APIError) -> Result:
    param, message = item_refusal(f"messages.{index}", error)
    return {"index": index, "status": "refused", "push": None, "replayed": False,
            "error": {"type": error.type, "code": error.code, "message": message,
                      "param": param}}  # fmt: skip


def _accepted(index: int, push: dict[str, Any], replayed: bool = False) -> Result:
    return {"index": index, "status": "accepted", "push": push, "replayed": replayed,
            "error": None}  # fmt: skip


class _WholeBatch(BaseModel):
    """The batch validated in one go: the everyday case, where every message is well formed."""

    model_config = ConfigDict(extra="forbid")
    messages: list[BatchMessage]


def _parsed(index: int, item: Any) -> BatchMessage:
    """The message at ``index`` validated on its own; raises the APIError it is refused with."""
    if not isinstance(item, dict):  # the envelope's rule (the schema says so): whole batch
        raise InvalidRequest(
            f"messages.{index}: each message is a JSON object.",
            code="parameter_invalid", param=f"messages.{index}",
        )  # fmt: skip
    reject_unstorable_text(item)
    try:
        return BatchMessage.model_validate_json(json.dumps(item), strict=True)
    except ValidationError as exc:
        raise validation_error(exc) from None


def _all_parsed(raw: bytes, items: list[Any]) -> list[BatchMessage | APIError]:
    """Every message validated: all at once when all pass, else each on its own."""
    if not may_hold_unstorable_text(raw):
        try:
            return list(_WholeBatch.model_validate_json(raw, strict=True).messages)
        except ValidationError:
            pass
    parsed: list[BatchMessage | APIError] = []
    for index, item in enumerate(items):
        try:
            parsed.append(_parsed(index, item))
        except APIError as exc:
            if exc.param == f"messages.{index}":  # not an object: the batch is malformed
                raise
            parsed.append(exc)
    return parsed


def _checked(index: int, parsed: BatchMessage, item: Any, catalog: ProviderCatalog) -> _Message:
    """``parsed`` checked further as ``POST /v1/pushes`` checks a push; raises the APIError it
    is refused with."""
    if (parsed.to is None) == (parsed.device_token is None):
        raise InvalidRequest(
            "give exactly one of `to` (registered devices) and `device_token` (a raw token)",
            code="parameter_invalid", param="to",
        )  # fmt: skip
    fields = {name: getattr(parsed, name) for name in PushContent.model_fields}
    content = PushContent.model_construct(
        parsed.model_fields_set & PushContent.model_fields.keys(), **fields
    )
    stamp_live_activity(content)
    check_sizes(content, catalog)
    return _Message(index, parsed, content, item)


async def send_push_batch(call: Call) -> JSONResponse:
    if call.request.headers.get("idempotency-key") is not None:
        raise InvalidRequest(
            "A batch takes an idempotency_key per message, not an Idempotency-Key header.",
            code="parameter_invalid", param="Idempotency-Key",
        )  # fmt: skip
    items = call.body_as(PushBatch).messages
    catalog: ProviderCatalog = call.request.app.state.providers
    results: list[Result | None] = [None] * len(items)
    checked: list[_Message] = []
    first_with_key: dict[str, int] = {}
    may_register = "devices:write" in call.key.scopes
    for index, parsed in enumerate(_all_parsed(await call.request.body(), list(items))):
        try:
            if isinstance(parsed, APIError):
                raise parsed
            message = _checked(index, parsed, items[index], catalog)
        except APIError as exc:
            results[index] = _refused(index, exc)
            continue
        if message.parsed.device_token is not None and not may_register:
            results[index] = _refused(index, PermissionDenied(
                "device_token: registering a raw token needs the 'devices:write' scope",
                code="missing_scope", param="device_token",
            ))  # fmt: skip
            continue
        key = message.parsed.idempotency_key
        if key is not None and key in first_with_key:
            results[index] = _refused(index, InvalidRequest(
                f"idempotency_key: the same as messages.{first_with_key[key]} of this batch "
                "(that one is sent)", code="duplicate_idempotency_key", param="idempotency_key",
            ))  # fmt: skip
            continue
        if key is not None:
            first_with_key[key] = index
        checked.append(message)
    checked = await _claim_keys(call, checked, results)
    claims = [message.claim for message in checked if message.claim is not None]
    try:
        async with in_transaction():
            await _accept(call, checked, results)
    except BaseException:
        await idempotency.release_many(claims)
        raise
    await call.run_after_commit()
    done = [result for result in results if result is not None]
    accepted = sum(result["status"] == "accepted" for result in done)
    return JSONResponse({"object": "push_batch", "accepted": accepted,
                         "refused": len(done) - accepted, "results": done})  # fmt: skip


async def _claim_keys(
    call: Call, messages: list[_Message], results: list[Result | None]
) -> list[_Message]:
    """Claim the messages' idempotency keys: the messages still to send (those replayed or
    refused get their result now)."""
    keyed = {m.parsed.idempotency_key: m for m in messages if m.parsed.idempotency_key}
    if not keyed:
        return messages
    project = call.tenant.project
    assert project is not None, "an API key's tenant has its project"
    outcomes = await idempotency.claim_many(
        project.id, call.key.mode, {key: m.fingerprint for key, m in keyed.items()}
    )
    to_send = []
    for message in messages:
        key = message.parsed.idempotency_key
        outcome = outcomes.get(key) if key is not None else None
        if isinstance(outcome, APIError):
            results[message.index] = _refused(message.index, outcome)
        elif isinstance(outcome, idempotency.Replay):
            results[message.index] = _accepted(message.index, outcome.body, replayed=True)
        else:
            message.claim = outcome
            to_send.append(message)
    return to_send


class _Named:
    """The devices a batch's messages name, read at once: by id, by user, by tag, by token."""

    def __init__(self, rows: list[dict[str, Any]]) -> None:
        self.devices = {row["id"]: row for row in rows}
        self.by_user: dict[str, list[str]] = {}
        self.by_tag: dict[str, list[str]] = {}
        for row in rows:
            if row["user_id"] is not None:
                self.by_user.setdefault(row["user_id"], []).append(row["id"])
            for tag in row["tags"] or ():
                self.by_tag.setdefault(tag, []).append(row["id"])

    def named_by(self, target: Target) -> list[dict[str, Any]]:
        ids = dict.fromkeys(d for d in target.device_ids if d in self.devices)
        for user_id in target.user_ids:
            ids.update(dict.fromkeys(self.by_user.get(user_id, ())))
        for tag in target.tags:
            ids.update(dict.fromkeys(self.by_tag.get(tag, ())))
        return [self.devices[device_id] for device_id in ids]


async def _named_devices(call: Call, targets: list[Target]) -> _Named:
    ids = {d for target in targets for d in target.device_ids}
    users = {u for target in targets for u in target.user_ids}
    tags = {t for target in targets for t in target.tags}
    if not (ids or users or tags):
        return _Named([])
    return _Named(await devices_named(call, ids, users, tags).values(*DEVICE_FACTS))


async def _accept(call: Call, messages: list[_Message], results: list[Result | None]) -> None:
    """Inside the batch's transaction: resolve every message's devices, accept them together,
    and store each keyed message's answer with the work."""
    tokens = await devices_of_tokens(
        call, [m.parsed.device_token for m in messages if m.parsed.device_token is not None]
    )
    named = await _named_devices(call, [m.parsed.to for m in messages if m.parsed.to is not None])
    outgoing: list[Outgoing] = []
    sending: list[tuple[_Message, list[Any]]] = []
    token_index = 0
    for message in messages:
        if message.parsed.device_token is not None:
            found = tokens[token_index]
            token_index += 1
            if isinstance(found, APIError):
                found.param = f"device_token.{found.param}" if found.param else "device_token"
                results[message.index] = _refused(message.index, found)
                continue
            devices = [found]
            target: dict[str, Any] = {"device_ids": [found["id"]]}
        else:
            assert message.parsed.to is not None
            devices = named.named_by(message.parsed.to)
            target = message.parsed.to.model_dump()
        needed = special_tokens(call, message.content)
        recipients, warnings = _recipients(call, devices, needed)
        outgoing.append(Outgoing(message.content, target, recipients, message.parsed.send_at))
        sending.append((message, warnings))
    now = datetime.now(UTC)
    pushes = await accept_pushes(sender_of(call), outgoing, now)
    answers: list[tuple[IdempotencyKey, Any]] = []
    released = []
    for (message, warnings), push in zip(sending, pushes, strict=True):
        if isinstance(push, APIError):
            if push.param == "to":
                push.param = message.target_param
            results[message.index] = _refused(message.index, push)
            if message.claim is not None:
                released.append(message.claim)
            continue
        sent = {"object": "push", "id": push.id, "status": push.status.value,
                "recipients": push.recipients, "warnings": warnings}  # fmt: skip
        results[message.index] = _accepted(message.index, sent)
        if message.claim is not None:
            answers.append((message.claim, sent))
    await idempotency.complete_many(answers, 202)
    await idempotency.release_many(released)


def _recipients(
    call: Call, devices: list[dict[str, Any]], needed: dict[Platform, TokenSlot]
) -> tuple[list[Destination], list[Any]]:
    """The devices a message reaches (active, with the token it needs), and its warnings."""
    recipients = []
    lacking: dict[TokenSlot, int] = {}
    invalid = 0
    for device in devices:
        if device["status"] != DeviceStatus.ACTIVE:
            invalid += device["status"] == DeviceStatus.INVALID
            continue
        platform = Platform(device["platform"])
        slot = needed.get(platform)
        if slot is not None and device[TOKEN_COLUMNS[slot]] is None:
            lacking[slot] = lacking.get(slot, 0) + 1
            continue
        recipients.append(Destination(device["id"], platform.value))
    warnings = warnings_of(call.key.mode, len(recipients), len(devices), invalid, lacking)
    return recipients, [warning.model_dump(mode="json") for warning in warnings]


operations = [
    Operation("POST", BATCH_PATH, send_push_batch,
              f"Send up to {MAX_MESSAGES} independent pushes, each with its own result",
              "Pushes", auth=Auth.API_KEY, scope="pushes:write",
              body=PushBatch, response=PushBatchResult, transactional=False,
              description="Each message is checked and sent on its own: the answer is 200 "
              "with one result per message, in order — `accepted` with its push (as `POST "
              "/v1/pushes` answers it, warnings included) or `refused` with the error that "
              "push would have got. A message names registered devices in `to` or one raw "
              "`device_token`, which is registered on the way if it is new. Each message may "
              "carry its own `idempotency_key` (the `Idempotency-Key` header is refused here). "
              "The batch counts as one request against the rate limit and each accepted "
              "push's devices against the month's quota; past the quota, messages are "
              "accepted in order while they fit. See docs/api.md, \"Batches\"."),
]  # fmt: skip
