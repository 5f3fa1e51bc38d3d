"""``POST /webhooks/stripe``: Stripe tells us a subscription, invoice or checkout changed.

1. The signature is checked with the ``stripe`` library against ``BRIK_STRIPE_WEBHOOK_SECRET``
   (its default five-minute tolerance refuses replayed old payloads): 400 when it fails. A
   signed body that is not an event as Stripe sends them — not a JSON object, an id or type
   no column holds, ``data.object`` not an object — is a 400 ``invalid_payload`` too, read
   with the same guards as any request body (``controlplane/api/bodies.py``), never a 500
   that Stripe would retry for days.
2. The event id is stored in ``stripe_events`` in the transaction that acts on it, so each event
   is acted on once; a duplicate gets 200 and changes nothing.
3. The subscription the event is about is read back from Stripe and mirrored
   (``controlplane/billing.py``): events may arrive late, twice or out of order, and the
   current state is the only one worth applying.

A failure to reach Stripe rolls everything back and answers 503, so Stripe sends it again.
"""

from __future__ import annotations

import logging
import re
from datetime import UTC, datetime
from typing import Any

import stripe
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route
from tortoise.exceptions import IntegrityError
from tortoise.transactions import in_transaction

from controlplane.api.bodies import parse_json
from controlplane.api.routing import request_origin
from controlplane.billing import (
    StripeConnection,
    SubscriptionState,
    call_stripe,
    mirror_subscription,
)
from controlplane.errors import InvalidRequest
from controlplane.models import StripeEvent
from controlplane.settings import Settings

logger = logging.getLogger(__name__)

# What Stripe sends (evt_1NG8Du2eZvKYlo2C…, sub_…, customer.subscription.updated), bounded by
# the stripe_events columns the id and type are stored in.
_STRIPE_ID = re.compile(r"[A-Za-z0-9_\-]{1,255}")
_EVENT_TYPE = re.compile(r"[A-Za-z0-9_.\-]{1,100}")


def subscription_id_of(event: dict[str, Any]) -> str | None:
    """The subscription an event is about, for the events that change one."""
    kind: str = event["type"]
    data: dict[str, Any] = event["data"]["object"]
    subscription: Any = None
    if kind.startswith("customer.subscription."):
        subscription = data.get("id")
    elif kind.startswith("checkout.session.") or kind.startswith("invoice."):
        subscription = data.get("subscription")
        parent = data.get("parent")
        if subscription is None and isinstance(parent, dict):  # invoices since 2025-03-31
            details = parent.get("subscription_details")
            subscription = details.get("subscription") if isinstance(details, dict) else None
        if isinstance(subscription, dict):
            subscription = subscription.get("id")
    if subscription is None:
        return None
    if not isinstance(subscription, str) or not _STRIPE_ID.fullmatch(subscription):
        raise InvalidRequest(
            "The body is not a Stripe event: the subscription it names is not an id.",
            code="invalid_payload",
        )
    return subscription


def verified_event(payload: bytes, signature: str | None, settings: Settings) -> dict[str, Any]:
    if settings.stripe_webhook_secret is None or settings.stripe_secret_key is None:
        raise InvalidRequest(
            "Stripe webhooks are not configured on this server (BRIK_STRIPE_SECRET_KEY and "
            "BRIK_STRIPE_WEBHOOK_SECRET).",
            code="billing_disabled",
        )
    if not signature:
        raise InvalidRequest("Missing the Stripe-Signature header.", code="invalid_signature")
    try:
        text = payload.decode("utf-8")
    except UnicodeDecodeError:
        raise InvalidRequest("The body is not a Stripe event.", code="invalid_payload") from None
    try:
        stripe.WebhookSignature.verify_header(
            text,
            signature,
            settings.stripe_webhook_secret.get_secret_value(),
            stripe.Webhook.DEFAULT_TOLERANCE,
        )
    except stripe.SignatureVerificationError as exc:
        raise InvalidRequest(
            f"The Stripe-Signature does not verify: {exc.user_message or exc}",
            code="invalid_signature",
        ) from None
    try:
        body = parse_json(payload)
    except InvalidRequest as exc:
        raise InvalidRequest(exc.message, code="invalid_payload") from None
    return _checked_event(body)


def _checked_event(body: Any) -> dict[str, Any]:
    """``body`` if it has the shape of a Stripe event, else 400 ``invalid_payload``."""

    def refuse(what: str) -> InvalidRequest:
        return InvalidRequest(f"The body is not a Stripe event: {what}.", code="invalid_payload")

    if not isinstance(body, dict):
        raise refuse("not a JSON object")
    event_id, kind, data = body.get("id"), body.get("type"), body.get("data")
    if not isinstance(event_id, str) or not _STRIPE_ID.fullmatch(event_id):
        raise refuse("its id is missing or not an event id")
    if not isinstance(kind, str) or not _EVENT_TYPE.fullmatch(kind):
        raise refuse("its type is missing or not an event type")
    if not isinstance(data, dict) or not isinstance(data.get("object"), dict):
        raise refuse("data.object is not an object")
    return body


async def _current(client: stripe.StripeClient, subscription_id: str | None) -> (
    dict[str, Any] | None
):  # fmt: skip
    """The subscription as Stripe has it now; None when there is none to mirror."""
    if subscription_id is None:
        return None

    async def retrieve() -> dict[str, Any] | None:
        try:
            subscription = await client.v1.subscriptions.retrieve_async(subscription_id)
        except stripe.InvalidRequestError as exc:
            if exc.http_status == 404:  # not in this Stripe account: nothing of ours to change
                logger.warning("Stripe event names subscription %s, which Stripe does not know",
                               subscription_id)  # fmt: skip
                return None
            raise
        body: dict[str, Any] = subscription.to_dict()
        return body

    return await call_stripe(retrieve())  # Stripe unreachable: 503, and Stripe retries


async def receive_stripe_event(request: Request) -> Response:
    settings: Settings = request.app.state.settings
    event = verified_event(await request.body(), request.headers.get("stripe-signature"), settings)
    connection: StripeConnection | None = request.app.state.stripe
    assert connection is not None  # verified_event refuses when billing is off
    client = connection.client
    subscription_id = subscription_id_of(event)
    try:
        async with in_transaction():
            await StripeEvent.create(id=event["id"], type=event["type"])
            mirrored = None
            subscription = await _current(client, subscription_id)
            if subscription is not None:
                state = SubscriptionState.of(subscription, settings)
                now = datetime.now(UTC)
                mirrored = await mirror_subscription(state, settings, now, request_origin(request))
    except IntegrityError:
        logger.info("Stripe event %s (%s) already processed", event["id"], event["type"])
        return JSONResponse({"received": True, "duplicate": True})
    logger.info("Stripe event %s (%s): subscription %s %s", event["id"], event["type"],
                subscription_id, "mirrored" if mirrored else "not ours or none")  # fmt: skip
    return JSONResponse({"received": True, "duplicate": False})


routes = [Route("/webhooks/stripe", receive_stripe_event, methods=["POST"])]
