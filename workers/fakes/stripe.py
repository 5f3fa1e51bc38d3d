"""A fake of the Stripe endpoints that ``localstripe`` lacks, in front of a localstripe server.

Brik talks to Stripe through one API base, so this fake sits at that address:

* it serves what localstripe does not have — Checkout Sessions (``/v1/checkout/sessions``),
  Customer Portal sessions (``/v1/billing_portal/sessions``) and Billing Meter events
  (``/v1/billing/meter_events``, de-duplicated by ``identifier`` as Stripe does);
* it passes every other request through to localstripe unchanged (customers, subscriptions,
  invoices, payment methods, webhook configuration …), so the stateful parts stay real.

Requests are form-encoded with Stripe's bracket notation and need a secret key, as on Stripe.
A test plays the customer with ``POST /_fake/checkout/sessions/{id}/complete``, or a browser
does on the session's ``url`` — a small hosted Checkout page whose Pay button pays, then sends
the browser to the session's ``success_url`` (Cancel: its ``cancel_url``), as Stripe's does;
a portal session's ``url`` is a page that leads back to its ``return_url``. The fake pays
with a card through localstripe (which creates the subscription and sends its own signed
``customer.subscription.created``), then sends ``checkout.session.completed`` signed the way
Stripe signs (``Stripe-Signature: t=…,v1=HMAC-SHA256(secret, "t.payload")``) to every webhook
registered through ``/_config/webhooks/{id}``. localstripe has one item per subscription, so a
Checkout's first line item becomes the subscription.
"""

from __future__ import annotations

import hashlib
import hmac
import html
import itertools
import json
import re
import secrets
import time
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl

import httpx
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from starlette.routing import Route

from workers.fakes.local_server import LocalServer

_KEY = re.compile(r"^([^\[]+)((?:\[[^\]]*\])*)$")
_FORWARDED_HEADERS = ("authorization", "content-type", "idempotency-key", "stripe-version")
GOOD_CARD = "4242424242424242"
DECLINING_CARD = "4000000000000341"  # attaches, then every charge is declined


def unflatten(pairs: list[tuple[str, str]]) -> dict[str, Any]:
    """``a[b][0][c]=x`` → ``{"a": {"b": [{"c": "x"}]}}`` (Stripe's form encoding)."""
    root: dict[str, Any] = {}
    for key, value in pairs:
        match = _KEY.match(key)
        if match is None:
            continue
        parts = [match.group(1), *re.findall(r"\[([^\]]*)\]", match.group(2))]
        node: Any = root
        for part, following in itertools.pairwise(parts):
            slot = int(part) if isinstance(node, list) else part
            child_is_list = following.isdigit()
            if isinstance(node, list):
                while len(node) <= slot:
                    node.append([] if child_is_list else {})
                node = node[slot]
            else:
                node = node.setdefault(slot, [] if child_is_list else {})
        last = parts[-1]
        if isinstance(node, list):
            index = int(last)
            while len(node) <= index:
                node.append(None)
            node[index] = value
        else:
            node[last] = value
    return root


def sign(payload: bytes, secret: str, timestamp: int | None = None) -> str:
    """The ``Stripe-Signature`` header Stripe would send with ``payload``."""
    timestamp = int(time.time()) if timestamp is None else timestamp
    signed = f"{timestamp}.".encode() + payload
    digest = hmac.new(secret.encode(), signed, hashlib.sha256).hexdigest()
    return f"t={timestamp},v1={digest}"


def _error(status: int, message: str, param: str | None = None) -> JSONResponse:
    body = {"error": {"type": "invalid_request_error", "message": message, "param": param}}
    return JSONResponse(body, status_code=status)


def _page(title: str, body: str) -> str:
    """A hosted page of the fake (Checkout, the portal): plain HTML, no script."""
    return (
        f'<!doctype html><html lang="en"><head><meta charset="utf-8"><title>{title} (fake '
        f"Stripe)</title></head><body><h1>{title}</h1>{body}</body></html>"
    )


def _new_id(prefix: str) -> str:
    return f"{prefix}_test_{secrets.token_hex(12)}"


@dataclass
class FakeStripe(LocalServer):
    """``await start()`` in front of the localstripe at ``upstream``; use :attr:`base_url`."""

    upstream: str
    checkout_sessions: dict[str, dict[str, Any]] = field(default_factory=dict)
    portal_sessions: dict[str, dict[str, Any]] = field(default_factory=dict)
    meter_events: list[dict[str, Any]] = field(default_factory=list)  # accepted, no duplicates
    duplicate_meter_events: int = 0
    webhooks: dict[str, tuple[str, str]] = field(default_factory=dict)  # id → (url, secret)
    # The secret key that created each Checkout session: its hosted page pays as that account.
    session_accounts: dict[str, str] = field(default_factory=dict)

    def app(self) -> Starlette:
        return Starlette(
            routes=[
                Route("/v1/checkout/sessions", self._create_checkout, methods=["POST"]),
                Route("/v1/checkout/sessions/{id}", self._retrieve_checkout, methods=["GET"]),
                Route("/v1/billing_portal/sessions", self._create_portal, methods=["POST"]),
                Route("/v1/billing/meter_events", self._meter_event, methods=["POST"]),
                Route("/_config/webhooks/{id}", self._config_webhook, methods=["POST"]),
                Route("/_fake/checkout/sessions/{id}/complete", self._complete, methods=["POST"]),
                Route("/checkout/{id}", self._checkout_page, methods=["GET", "POST"]),
                Route("/portal/{id}", self._portal_page, methods=["GET"]),
                Route("/{path:path}", self._forward, methods=["GET", "POST", "DELETE"]),
            ]
        )

    def metered(self, customer_id: str, event_name: str) -> int:
        """The total value Stripe would bill ``customer_id`` for ``event_name``."""
        return sum(
            int(event["payload"]["value"])
            for event in self.meter_events
            if event["event_name"] == event_name
            and event["payload"].get("stripe_customer_id") == customer_id
        )

    # -- what localstripe lacks --------------------------------------------------------------

    async def _form(self, request: Request) -> dict[str, Any] | Response:
        if not request.headers.get("authorization", "").startswith("Bearer sk_"):
            return JSONResponse(
                {"error": {"type": "invalid_request_error", "message": "Invalid API Key"}},
                status_code=401,
            )
        return unflatten(parse_qsl((await request.body()).decode(), keep_blank_values=True))

    async def _create_checkout(self, request: Request) -> Response:
        form = await self._form(request)
        if isinstance(form, Response):
            return form
        if form.get("mode") != "subscription":
            return _error(400, "Only subscription mode is faked.", "mode")
        for required in ("customer", "success_url", "cancel_url"):
            if not form.get(required):
                return _error(400, f"Missing required param: {required}.", required)
        items = form.get("line_items")
        if not isinstance(items, list) or not items or not items[0].get("price"):
            return _error(400, "Missing required param: line_items[0][price].", "line_items")
        session_id = _new_id("cs")
        session = {
            "id": session_id,
            "object": "checkout.session",
            "mode": "subscription",
            "status": "open",
            "payment_status": "unpaid",
            "customer": form["customer"],
            "client_reference_id": form.get("client_reference_id"),
            "success_url": form["success_url"],
            "cancel_url": form["cancel_url"],
            "line_items": items,
            "metadata": (form.get("subscription_data") or {}).get("metadata") or {},
            "subscription": None,
            "url": f"{self.base_url}/checkout/{session_id}",
            "created": int(time.time()),
            "livemode": False,
        }
        self.checkout_sessions[session_id] = session
        self.session_accounts[session_id] = request.headers["authorization"]
        return JSONResponse(session)

    async def _retrieve_checkout(self, request: Request) -> Response:
        session = self.checkout_sessions.get(request.path_params["id"])
        if session is None:
            return _error(404, f"No such checkout.session: '{request.path_params['id']}'", "id")
        return JSONResponse(session)

    async def _create_portal(self, request: Request) -> Response:
        form = await self._form(request)
        if isinstance(form, Response):
            return form
        if not form.get("customer"):
            return _error(400, "Missing required param: customer.", "customer")
        session_id = _new_id("bps")
        session = {
            "id": session_id,
            "object": "billing_portal.session",
            "customer": form["customer"],
            "return_url": form.get("return_url"),
            "url": f"{self.base_url}/portal/{session_id}",
            "created": int(time.time()),
            "livemode": False,
        }
        self.portal_sessions[session_id] = session
        return JSONResponse(session)

    async def _meter_event(self, request: Request) -> Response:
        form = await self._form(request)
        if isinstance(form, Response):
            return form
        payload = form.get("payload") or {}
        if not form.get("event_name"):
            return _error(400, "Missing required param: event_name.", "event_name")
        if not payload.get("stripe_customer_id"):
            return _error(400, "The payload needs stripe_customer_id.", "payload")
        if not re.fullmatch(r"-?\d+", str(payload.get("value", ""))):
            return _error(400, "The payload's value must be a whole number.", "payload")
        timestamp = int(form.get("timestamp") or time.time())
        if not time.time() - 35 * 86400 <= timestamp <= time.time() + 300:
            return _error(400, "timestamp must be within the past 35 days.", "timestamp")
        identifier = form.get("identifier") or _new_id("mev")
        event = {
            "object": "billing.meter_event",
            "event_name": form["event_name"],
            "identifier": identifier,
            "payload": payload,
            "timestamp": timestamp,
            "created": int(time.time()),
            "livemode": False,
        }
        # Stripe accepts a repeated identifier and counts it once (within at least 24 hours).
        if any(seen["identifier"] == identifier for seen in self.meter_events):
            self.duplicate_meter_events += 1
        else:
            self.meter_events.append(event)
        return JSONResponse(event)

    async def _config_webhook(self, request: Request) -> Response:
        form = dict(parse_qsl((await request.body()).decode()))
        self.webhooks[request.path_params["id"]] = (form.get("url", ""), form.get("secret", ""))
        return await self._forward(request)

    # -- playing the customer ----------------------------------------------------------------

    async def _complete(self, request: Request) -> Response:
        session = self.checkout_sessions.get(request.path_params["id"])
        if session is None or session["status"] != "open":
            return _error(404, "No open checkout session with that id.")
        card = dict(parse_qsl((await request.body()).decode())).get("card", GOOD_CARD)
        return await self._pay(session, card, request.headers.get("authorization", ""))

    async def _checkout_page(self, request: Request) -> Response:
        """The hosted Checkout page: GET shows it, its form (POST) pays with the good card
        and sends the browser back to the session's success URL."""
        session = self.checkout_sessions.get(request.path_params["id"])
        if session is None or session["status"] != "open":
            return HTMLResponse(_page("Checkout", "<p>This checkout has ended.</p>"), 404)
        if request.method == "POST":
            paid = await self._pay(session, GOOD_CARD, self.session_accounts[session["id"]])
            if paid.status_code != 200:
                return paid
            return RedirectResponse(session["success_url"], status_code=303)
        price = html.escape(str(session["line_items"][0]["price"]))
        cancel = html.escape(session["cancel_url"], quote=True)
        body = (
            f"<p>Subscribe to <strong>{price}</strong> (test mode: card {GOOD_CARD}).</p>"
            f'<form method="post"><button type="submit">Pay and subscribe</button></form>'
            f'<p><a href="{cancel}">Cancel and go back</a></p>'
        )
        return HTMLResponse(_page("Checkout", body))

    async def _portal_page(self, request: Request) -> Response:
        session = self.portal_sessions.get(request.path_params["id"])
        if session is None:
            return HTMLResponse(_page("Billing portal", "<p>No such session.</p>"), 404)
        back = html.escape(session.get("return_url") or "/", quote=True)
        body = f'<p>Customer portal (fake).</p><p><a href="{back}">Return</a></p>'
        return HTMLResponse(_page("Billing portal", body))

    async def _pay(self, session: dict[str, Any], card: str, authorization: str) -> Response:
        """The customer pays: a card through localstripe, the subscription, then Stripe's
        ``checkout.session.completed`` to every webhook."""
        auth = {"authorization": authorization}
        async with httpx.AsyncClient(base_url=self.upstream, headers=auth) as upstream:
            method = await upstream.post(
                "/v1/payment_methods",
                data={"type": "card", "card[number]": card, "card[exp_month]": "12",
                      "card[exp_year]": "2040", "card[cvc]": "123"},
            )  # fmt: skip
            if method.status_code != 200:
                return Response(method.content, method.status_code, media_type="application/json")
            method_id = method.json()["id"]
            customer = session["customer"]
            await upstream.post(f"/v1/payment_methods/{method_id}/attach",
                                data={"customer": customer})  # fmt: skip
            await upstream.post(
                f"/v1/customers/{customer}",
                data={"invoice_settings[default_payment_method]": method_id},
            )
            data = {"customer": customer, "items[0][plan]": session["line_items"][0]["price"]}
            for key, value in session["metadata"].items():
                data[f"metadata[{key}]"] = value
            created = await upstream.post("/v1/subscriptions", data=data)
        if created.status_code != 200:
            return Response(created.content, created.status_code, media_type="application/json")
        session.update(status="complete", payment_status="paid", subscription=created.json()["id"])
        await self.send_event("checkout.session.completed", session)
        return JSONResponse(session)

    async def send_event(self, kind: str, data_object: dict[str, Any]) -> str:
        """Send a signed event to every registered webhook, as Stripe does; returns its id."""
        event_id = _new_id("evt")
        event = {
            "id": event_id,
            "object": "event",
            "type": kind,
            "created": int(time.time()),
            "livemode": False,
            "api_version": "2026-10-28",
            "data": {"object": data_object},
        }
        payload = json.dumps(event).encode()
        async with httpx.AsyncClient() as client:
            for url, secret in self.webhooks.values():
                await client.post(
                    url,
                    content=payload,
                    headers={"content-type": "application/json",
                             "stripe-signature": sign(payload, secret)},
                )  # fmt: skip
        return event_id

    # -- everything else is localstripe's ---------------------------------------------------

    async def _forward(self, request: Request) -> Response:
        headers = {name: request.headers[name] for name in _FORWARDED_HEADERS
                   if name in request.headers}  # fmt: skip
        async with httpx.AsyncClient(base_url=self.upstream) as upstream:
            answer = await upstream.request(
                request.method,
                request.url.path,
                params=list(request.query_params.multi_items()),
                content=await request.body(),
                headers=headers,
            )
        return Response(
            answer.content,
            status_code=answer.status_code,
            media_type=answer.headers.get("content-type", "application/json"),
        )
