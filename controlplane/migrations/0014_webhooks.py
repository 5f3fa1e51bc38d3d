"""Outbound webhooks (issue 16): endpoints, the event outbox and the deliveries of each event
to each endpoint (``controlplane/models/webhooks.py``)."""

from tortoise import migrations
from tortoise.migrations import operations as ops
import functools
from controlplane.models.api_keys import KeyMode
from controlplane.models.ids import new_webhook_delivery_id, new_webhook_endpoint_id, new_webhook_event_id
from controlplane.models.webhooks import EndpointType, WebhookDeliveryStatus
from json import dumps, loads
from tortoise.fields.base import OnDelete
from tortoise import fields
from tortoise.indexes import Index

class Migration(migrations.Migration):
    dependencies = [('brik', '0013_analytics')]

    initial = False

    operations = [
        ops.CreateModel(
            name='WebhookEndpoint',
            fields=[
                ('id', fields.CharField(primary_key=True, default=new_webhook_endpoint_id, unique=True, db_index=True, max_length=32)),
                ('project', fields.ForeignKeyField('brik.Project', source_field='project_id', db_constraint=True, to_field='id', related_name='webhook_endpoints', on_delete=OnDelete.CASCADE)),
                ('mode', fields.CharEnumField(description='TEST: test\nLIVE: live', enum_type=KeyMode, max_length=4)),
                ('type', fields.CharEnumField(default=EndpointType.WEBHOOK, description='WEBHOOK: webhook\nSLACK: slack\nDISCORD: discord', enum_type=EndpointType, max_length=10)),
                ('url_encrypted', fields.TextField(unique=False)),
                ('url_display', fields.CharField(max_length=2048)),
                ('description', fields.CharField(null=True, max_length=500)),
                ('events', fields.JSONField(encoder=functools.partial(dumps, separators=(',', ':')), decoder=loads)),
                ('enabled', fields.BooleanField(default=True)),
                ('disabled_reason', fields.CharField(null=True, max_length=500)),
                ('disabled_at', fields.DatetimeField(null=True, auto_now=False, auto_now_add=False)),
                ('secret_encrypted', fields.TextField(unique=False)),
                ('previous_secret_encrypted', fields.TextField(null=True, unique=False)),
                ('previous_secret_expires_at', fields.DatetimeField(null=True, auto_now=False, auto_now_add=False)),
                ('consecutive_failures', fields.IntField(default=0)),
                ('failing_since', fields.DatetimeField(null=True, auto_now=False, auto_now_add=False)),
                ('last_success_at', fields.DatetimeField(null=True, auto_now=False, auto_now_add=False)),
                ('last_failure_at', fields.DatetimeField(null=True, auto_now=False, auto_now_add=False)),
                ('created_at', fields.DatetimeField(auto_now=False, auto_now_add=True)),
                ('updated_at', fields.DatetimeField(auto_now=True, auto_now_add=False)),
            ],
            options={'table': 'webhook_endpoints', 'app': 'brik', 'indexes': [Index(fields=['project_id', 'mode', 'enabled'])], 'pk_attr': 'id', 'table_description': "Where a project's events go, in one mode (test-mode events to test-mode endpoints)."},
            bases=['Model'],
        ),
        ops.CreateModel(
            name='WebhookEvent',
            fields=[
                ('id', fields.BigIntField(generated=True, primary_key=True, unique=True, db_index=True)),
                ('public_id', fields.CharField(default=new_webhook_event_id, unique=True, max_length=32)),
                ('project', fields.ForeignKeyField('brik.Project', source_field='project_id', db_constraint=True, to_field='id', related_name='webhook_events', on_delete=OnDelete.CASCADE)),
                ('mode', fields.CharEnumField(description='TEST: test\nLIVE: live', enum_type=KeyMode, max_length=4)),
                ('type', fields.CharField(max_length=64)),
                ('data', fields.JSONField(encoder=functools.partial(dumps, separators=(',', ':')), decoder=loads)),
                ('ordering_key', fields.CharField(null=True, max_length=64)),
                ('dedupe_key', fields.CharField(null=True, unique=True, max_length=200)),
                ('created_at', fields.DatetimeField(auto_now=False, auto_now_add=True)),
            ],
            options={'table': 'webhook_events', 'app': 'brik', 'pk_attr': 'id', 'table_description': 'Something that happened, as the endpoints that wanted it are told (``data``).'},
            bases=['Model'],
        ),
        ops.CreateModel(
            name='WebhookDelivery',
            fields=[
                ('id', fields.CharField(primary_key=True, default=new_webhook_delivery_id, unique=True, db_index=True, max_length=32)),
                ('project', fields.ForeignKeyField('brik.Project', source_field='project_id', db_constraint=True, to_field='id', related_name='webhook_deliveries', on_delete=OnDelete.CASCADE)),
                ('mode', fields.CharEnumField(description='TEST: test\nLIVE: live', enum_type=KeyMode, max_length=4)),
                ('endpoint', fields.ForeignKeyField('brik.WebhookEndpoint', source_field='endpoint_id', db_constraint=True, to_field='id', related_name='deliveries', on_delete=OnDelete.CASCADE)),
                ('event', fields.ForeignKeyField('brik.WebhookEvent', source_field='event_id', db_constraint=True, to_field='id', related_name='deliveries', on_delete=OnDelete.CASCADE)),
                ('ordering_key', fields.CharField(null=True, max_length=64)),
                ('trigger', fields.CharField(default='event', max_length=10)),
                ('status', fields.CharEnumField(description='WAITING: waiting\nQUEUED: queued\nSENDING: sending\nSUCCEEDED: succeeded\nFAILED: failed', enum_type=WebhookDeliveryStatus, max_length=10)),
                ('attempts', fields.IntField(default=0)),
                ('next_attempt_at', fields.DatetimeField(null=True, auto_now=False, auto_now_add=False)),
                ('lease_token', fields.CharField(null=True, max_length=32)),
                ('lease_until', fields.DatetimeField(null=True, auto_now=False, auto_now_add=False)),
                ('response_status', fields.IntField(null=True)),
                ('response_excerpt', fields.TextField(null=True, unique=False)),
                ('latency_ms', fields.IntField(null=True)),
                ('error', fields.CharField(null=True, max_length=500)),
                ('created_at', fields.DatetimeField(auto_now=False, auto_now_add=True)),
                ('last_attempt_at', fields.DatetimeField(null=True, auto_now=False, auto_now_add=False)),
                ('completed_at', fields.DatetimeField(null=True, auto_now=False, auto_now_add=False)),
            ],
            options={'table': 'webhook_deliveries', 'app': 'brik', 'indexes': [Index(fields=['status', 'next_attempt_at']), Index(fields=['endpoint_id', 'ordering_key', 'status']), Index(fields=['endpoint_id', 'created_at'])], 'pk_attr': 'id', 'table_description': 'One event to one endpoint: its attempts so far and how the last one went.'},
            bases=['Model'],
        ),
    ]
