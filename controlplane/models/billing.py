"""Billing through Stripe: the subscriptions mirrored from it, the webhook events already
processed, and the overage reported to its meters."""

from __future__ import annotations

from tortoise import fields
from tortoise.models import Model

from controlplane.models.tenancy import Organization, Plan


class Subscription(Model):
    """An organization's Stripe subscription as last read from Stripe.

    Written only from the subscription Stripe returns (never from an event's payload), so
    events that arrive twice or out of order cannot roll it back.
    """

    id = fields.CharField(max_length=255, primary_key=True)  # Stripe's sub_...
    organization: fields.ForeignKeyRelation[Organization] = fields.ForeignKeyField(
        "brik.Organization", related_name="subscriptions", on_delete=fields.CASCADE
    )
    customer_id = fields.CharField(max_length=255)
    status = fields.CharField(max_length=40)
    price_id = fields.CharField(max_length=255, null=True)
    plan = fields.CharEnumField(Plan, max_length=20, null=True)  # None: a price we do not sell
    current_period_start = fields.DatetimeField(null=True)
    current_period_end = fields.DatetimeField(null=True)
    cancel_at_period_end = fields.BooleanField(default=False)
    canceled_at = fields.DatetimeField(null=True)
    past_due_since = fields.DatetimeField(null=True)  # starts the grace period
    updated_at = fields.DatetimeField(auto_now=True)

    class Meta:
        table = "billing_subscriptions"


class StripeEvent(Model):
    """A webhook event already processed: each is acted on once."""

    id = fields.CharField(max_length=255, primary_key=True)  # Stripe's evt_...
    type = fields.CharField(max_length=100)
    received_at = fields.DatetimeField(auto_now_add=True)

    class Meta:
        table = "stripe_events"


class MeterReport(Model):
    """Overage pushes reported (or about to be) to a Stripe meter as one meter event.

    The row is committed before the event is sent; its ``identifier`` goes with every attempt,
    so Stripe counts a report once however often it is retried.
    """

    id = fields.BigIntField(primary_key=True)
    organization: fields.ForeignKeyRelation[Organization] = fields.ForeignKeyField(
        "brik.Organization", related_name="meter_reports", on_delete=fields.CASCADE
    )
    customer_id = fields.CharField(max_length=255)
    period_start = fields.DateField()
    identifier = fields.CharField(max_length=100, unique=True)
    value = fields.BigIntField()
    timestamp = fields.DatetimeField()
    sent_at = fields.DatetimeField(null=True)
    created_at = fields.DatetimeField(auto_now_add=True)

    class Meta:
        table = "meter_reports"
