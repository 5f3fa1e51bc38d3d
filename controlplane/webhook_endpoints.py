"""A webhook endpoint's life beyond its API: its secrets, its health, and being disabled.

**Secrets.** Each endpoint signs with its own secret (``whsec_…``), shown once — at creation and
at each rotation — and stored encrypted by the key ring. A rotation keeps the old secret signing
beside the new one for the overlap asked (:func:`signing_secrets`), so receivers can switch at
leisure.

**Health.** Every attempt's outcome is counted on the endpoint: a success clears the count; a
failure adds to ``consecutive_failures`` and starts ``failing_since``. An endpoint that has
failed every attempt for ``BRIK_WEBHOOK_DISABLE_AFTER_SECONDS`` (three days by default) *and* at
least ``BRIK_WEBHOOK_DISABLE_AFTER_FAILURES`` times in a row is disabled (:func:`count_failure`):
both, because a busy endpoint piles up failures in minutes during a short outage, and a quiet
one may fail once a day for a week. Disabling is audited, ends its pending deliveries
``failed`` (they can be resent once it is fixed), and mails the organization's owners.

Domain code: callers pass what it needs (a clock, a key ring, a send function), never a request.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from urllib.parse import urlsplit, urlunsplit

from tortoise.expressions import F

from controlplane import audit, mail
from controlplane.crypto import KeyRing
from controlplane.models import (
    PENDING_WEBHOOK_STATUSES,
    EndpointType,
    Membership,
    Organization,
    Project,
    Role,
    WebhookDelivery,
    WebhookDeliveryStatus,
    WebhookEndpoint,
)
from controlplane.settings import Settings

MAX_ENDPOINTS_PER_PROJECT = 20  # per mode
WORKER_ACTOR = audit.Actor("webhooks", None)


def display_url(endpoint_type: EndpointType, url: str) -> str:
    """``url`` as answers show it. A Slack or Discord incoming-webhook URL is a credential (who
    has it posts to the channel): only its start and last four characters are shown."""
    if endpoint_type is EndpointType.WEBHOOK:
        return url
    parts = urlsplit(url)
    segments = parts.path.split("/")
    shown = "/".join(segments[:3]) if len(segments) > 3 else parts.path
    return urlunsplit((parts.scheme, parts.netloc, f"{shown}/…{url[-4:]}", "", ""))


def signing_secrets(endpoint: WebhookEndpoint, keyring: KeyRing, now: datetime) -> list[str]:
    """The secrets that sign a request now: the current one, and the previous one while its
    overlap lasts."""
    found = [keyring.decrypt(endpoint.secret_encrypted).decode()]
    expires: datetime | None = endpoint.previous_secret_expires_at
    if endpoint.previous_secret_encrypted and expires is not None and now < expires:
        found.append(keyring.decrypt(endpoint.previous_secret_encrypted).decode())
    return found


async def count_success(endpoint_id: str, now: datetime) -> None:
    await WebhookEndpoint.filter(id=endpoint_id).update(
        consecutive_failures=0, failing_since=None, last_success_at=now
    )


@dataclass(frozen=True, slots=True)
class Disabled:
    """An endpoint just disabled for failing: who to tell, once the transaction commits."""

    endpoint: WebhookEndpoint
    organization: Organization
    project: Project
    last_error: str


async def count_failure(
    endpoint_id: str, now: datetime, last_error: str, settings: Settings
) -> Disabled | None:
    """Count a failed attempt; disable the endpoint if it has failed long and often enough.
    Run it inside the transaction that records the attempt."""
    await WebhookEndpoint.filter(id=endpoint_id, failing_since__isnull=True).update(
        failing_since=now
    )
    await WebhookEndpoint.filter(id=endpoint_id).update(
        consecutive_failures=F("consecutive_failures") + 1, last_failure_at=now
    )
    endpoint = await WebhookEndpoint.get_or_none(id=endpoint_id)
    if endpoint is None or not endpoint.enabled or endpoint.failing_since is None:
        return None
    since: datetime = endpoint.failing_since
    long_enough = now - since >= timedelta(seconds=settings.webhook_disable_after_seconds)
    if not long_enough or endpoint.consecutive_failures < settings.webhook_disable_after_failures:
        return None
    reason = (
        f"every attempt failed since {since.isoformat(timespec='seconds')} "
        f"({endpoint.consecutive_failures} in a row; the last: {last_error})"
    )
    if not await disable(endpoint, reason[:500], now):
        return None
    project = await Project.get(id=endpoint.project_id).select_related("organization")  # type: ignore[attr-defined]
    await audit.record(
        "webhook_endpoint.disabled", origin=None, actor=WORKER_ACTOR,
        organization_id=project.organization.id, target_type="webhook_endpoint",
        target_id=endpoint.id,
        details={
            "project_id": project.id, "url": endpoint.url_display,
            "consecutive_failures": endpoint.consecutive_failures,
            "last_error": last_error[:300],
        },
    )  # fmt: skip
    return Disabled(endpoint, project.organization, project, last_error)


async def disable(endpoint: WebhookEndpoint, reason: str, now: datetime) -> bool:
    """Disable ``endpoint`` (if it still is enabled) and end its pending deliveries ``failed``;
    False when it was already disabled."""
    changed = await WebhookEndpoint.filter(id=endpoint.id, enabled=True).update(
        enabled=False, disabled_reason=reason, disabled_at=now
    )
    if not changed:
        return False
    endpoint.enabled, endpoint.disabled_reason, endpoint.disabled_at = False, reason, now
    await WebhookDelivery.filter(
        endpoint_id=endpoint.id, status__in=PENDING_WEBHOOK_STATUSES
    ).update(
        status=WebhookDeliveryStatus.FAILED, completed_at=now, lease_token=None, lease_until=None,
        error="the endpoint was disabled before this was delivered; resend it once it is fixed",
    )  # fmt: skip
    return True


async def tell_owners(
    disabled: Disabled, settings: Settings, send: Callable[[mail.Email], Awaitable[object]]
) -> int:
    """Mail each owner of the organization that the endpoint was disabled; returns how many."""
    owners = await Membership.filter(
        organization_id=disabled.organization.id, role=Role.OWNER
    ).values_list("user__email", flat=True)
    endpoint = disabled.endpoint
    base = settings.public_base_url.rstrip("/")
    body = (
        f"The {endpoint.mode.value}-mode webhook endpoint {endpoint.id} of the project "
        f"{disabled.project.name} ({disabled.organization.name}) was disabled: "
        f"{endpoint.disabled_reason}.\n\n"
        f"It sent to {endpoint.url_display}. Events are no longer sent to it, and those still "
        "waiting were marked failed. Once the endpoint answers again, enable it (PATCH "
        f'/v1/webhook_endpoints/{endpoint.id} with {{"enabled": true}}, or in the dashboard: '
        f"{base}/dashboard/) and resend what it missed from its delivery log."
    )
    for email in owners:
        await send(
            mail.Email(
                to=str(email),
                subject=f"Webhook endpoint disabled in {disabled.project.name}",
                body=body,
                kind="webhook.endpoint_disabled",
                organization_id=disabled.organization.id,
            )
        )
    return len(owners)
