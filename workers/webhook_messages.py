"""What a webhook request says: Brik's JSON event, or a message people read in Slack or Discord.

An endpoint of type ``webhook`` gets the event itself (``controlplane.webhook_events.envelope``)
as compact JSON. One of type ``slack`` or ``discord`` gets the same event told in words, in
that service's incoming-webhook format — the alerts a team reads in a channel:

* Slack: ``{"text", "blocks"}`` — ``text`` is the notification's fallback; the blocks are a
  header, the message with up to 10 fields, and a context line (event type, project, mode,
  event id). Text from tenants' data is escaped (``&``, ``<``, ``>``), so it cannot form links
  or mentions, and each piece is cut to Slack's limits.
* Discord: ``{"content", "embeds", "allowed_mentions"}`` — one embed (title, description,
  fields, colour, footer, timestamp) within Discord's limits, and ``allowed_mentions`` empty,
  so no ``@everyone`` in a user id can ping a channel.

Both carry the ``Brik-Signature`` header like any webhook (harmless to them; useful behind a
relay that checks it).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from controlplane.models import EndpointType

GREEN, AMBER, RED, BLUE, GREY = 0x2EB67D, 0xECB22E, 0xE01E5A, 0x36C5F0, 0x868686


@dataclass(frozen=True)
class Message:
    """An event in words: a title, a sentence or two, and a few labelled values."""

    title: str
    text: str
    color: int = GREY
    fields: list[tuple[str, str]] = field(default_factory=list)


def _count(deliveries: dict[str, Any], status: str) -> int:
    value = deliveries.get(status, 0)
    return int(value) if isinstance(value, int) else 0


def describe(event: dict[str, Any]) -> Message:
    """The event (an envelope) told for people."""
    kind = str(event.get("type"))
    data: dict[str, Any] = event.get("data", {}).get("object", {})
    if kind == "push.completed":
        deliveries = data.get("deliveries") or {}
        delivered, total = _count(deliveries, "delivered"), int(data.get("recipients") or 0)
        failed = total - delivered
        return Message(
            "Push completed",
            f"Push {data.get('id')} ({data.get('kind')}) reached {delivered} of {total} "
            f"device{'s' if total != 1 else ''}.",
            GREEN if failed == 0 else AMBER if delivered else RED,
            [(status.replace("_", " "), str(count)) for status, count in deliveries.items()],
        )
    if kind == "delivery.failed":
        return Message(
            "Delivery failed",
            f"A delivery of push {data.get('push_id')} to device {data.get('device_id')} "
            f"({data.get('platform')}) failed after {data.get('attempts')} attempt(s): "
            f"{data.get('reason')}",
            RED,
            [("Push", str(data.get("push_id"))), ("Provider", str(data.get("provider")))],
        )
    if kind == "device.invalidated":
        return Message(
            "Device invalidated",
            f"The push token of device {data.get('id')} ({data.get('platform')}, user "
            f"{data.get('user_id') or '—'}) is dead: {data.get('invalid_reason')}. Brik no longer "
            "sends to it.",
            AMBER,
        )
    if kind == "activity.ended":
        why = "by your server" if data.get("end_reason") == "ended" else "at Apple's 8-hour limit"
        return Message(
            "Live Activity ended",
            f"The {data.get('activity_type')} activity {data.get('id')} ended {why}.",
            BLUE,
            [("Status", str(data.get("status"))), ("User", str(data.get("user_id") or "—"))],
        )
    if kind == "usage.threshold":
        percent = int(data.get("percent") or 0)
        return Message(
            f"{percent} % of the monthly {data.get('metric')} quota used",
            f"The organization has used {int(data.get('used') or 0):,} of its "
            f"{int(data.get('quota') or 0):,} {data.get('mode')}-mode {data.get('metric')} "
            f"this month; the quota resets at {data.get('resets_at')}.",
            RED if percent >= 100 else AMBER,
        )
    if kind == "credential.failing":
        provider = str(data.get("provider")).upper()
        return Message(
            f"{provider} refused the credential",
            f"{provider} refused the project's credential: {data.get('reason')}. Pushes through "
            "it fail until a valid one is uploaded.",
            RED,
        )
    if kind == "billing.plan_changed":
        return Message(
            "Plan changed",
            f"The organization's plan changed from {data.get('previous_plan')} to "
            f"{data.get('plan')} ({data.get('source')}).",
            BLUE,
        )
    if kind == "billing.subscription_changed":
        return Message(
            f"Subscription {data.get('status')}",
            f"The subscription {data.get('id')} is {data.get('status')} (was "
            f"{data.get('previous_status') or 'new'}), plan {data.get('plan') or 'none'}"
            f"{', canceling at period end' if data.get('cancel_at_period_end') else ''}.",
            RED if data.get("status") in ("past_due", "unpaid", "canceled") else BLUE,
        )
    if kind == "webhook.test":
        return Message("Test event", str(data.get("message")), GREY)
    return Message(kind, json.dumps(data, separators=(",", ":"))[:1000], GREY)


def _slack_escape(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _cut(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _context(event: dict[str, Any], project_name: str) -> str:
    mode = "live" if event.get("livemode") else "test"
    return f"{event.get('type')} · {project_name} · {mode} mode · {event.get('id')}"


def slack(event: dict[str, Any], project_name: str) -> dict[str, Any]:
    """The event as a Slack incoming-webhook message."""
    message = describe(event)
    section: dict[str, Any] = {
        "type": "section",
        "text": {"type": "mrkdwn", "text": _cut(_slack_escape(message.text), 3000)},
    }
    if message.fields:
        section["fields"] = [
            {"type": "mrkdwn", "text": _cut(f"*{_slack_escape(name)}*\n{_slack_escape(value)}",
                                            2000)}
            for name, value in message.fields[:10]
        ]  # fmt: skip
    context = _slack_escape(_context(event, project_name))
    return {
        "text": _cut(_slack_escape(f"{message.title}: {message.text}"), 3000),
        "blocks": [
            {"type": "header", "text": {"type": "plain_text", "text": _cut(message.title, 150)}},
            section,
            {"type": "context", "elements": [{"type": "mrkdwn", "text": _cut(context, 3000)}]},
        ],
    }


def discord(event: dict[str, Any], project_name: str) -> dict[str, Any]:
    """The event as a Discord webhook message (one embed)."""
    message = describe(event)
    created = event.get("created")
    moment = datetime.fromtimestamp(created, UTC) if isinstance(created, int) else None
    embed: dict[str, Any] = {
        "title": _cut(message.title, 256),
        "description": _cut(message.text, 4096),
        "color": message.color,
        "fields": [
            {"name": _cut(name, 256), "value": _cut(value or "—", 1024), "inline": True}
            for name, value in message.fields[:25]
        ],
        "footer": {"text": _cut(_context(event, project_name), 2048)},
    }
    if moment is not None:
        embed["timestamp"] = moment.isoformat()
    return {
        "content": _cut(f"**{message.title}**", 2000),
        "embeds": [embed],
        "allowed_mentions": {"parse": []},
    }


def request_body(endpoint_type: EndpointType, event: dict[str, Any], project_name: str) -> bytes:
    """The bytes POSTed to an endpoint of ``endpoint_type`` for ``event`` (an envelope)."""
    if endpoint_type is EndpointType.SLACK:
        payload = slack(event, project_name)
    elif endpoint_type is EndpointType.DISCORD:
        payload = discord(event, project_name)
    else:
        payload = event
    return json.dumps(payload, separators=(",", ":"), ensure_ascii=False).encode()
