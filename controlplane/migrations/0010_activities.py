"""Live Activities addressed by id (issue 13): activities, their per-device tokens, and the
deliveries that go through them (an activity token, or a broadcast channel)."""

from tortoise import migrations
from tortoise.migrations import operations as ops
import functools
from controlplane.models.activities import ActivityStatus, ActivityTokenStatus
from controlplane.models.api_keys import KeyMode
from controlplane.models.ids import new_activity_id
from controlplane.models.pushes import DeliveryStatus
from json import dumps, loads
from tortoise.fields.base import OnDelete
from tortoise import fields
from tortoise.indexes import Index

class Migration(migrations.Migration):
    dependencies = [('brik', '0009_idempotency_mode')]

    initial = False

    operations = [
        ops.CreateModel(
            name='Activity',
            fields=[
                ('id', fields.CharField(primary_key=True, default=new_activity_id, unique=True, db_index=True, max_length=32)),
                ('project', fields.ForeignKeyField('brik.Project', source_field='project_id', db_constraint=True, to_field='id', related_name='activities', on_delete=OnDelete.CASCADE)),
                ('mode', fields.CharEnumField(description='TEST: test\nLIVE: live', enum_type=KeyMode, max_length=10)),
                ('activity_type', fields.CharField(max_length=200)),
                ('attributes', fields.JSONField(encoder=functools.partial(dumps, separators=(',', ':')), decoder=loads)),
                ('content_state', fields.JSONField(encoder=functools.partial(dumps, separators=(',', ':')), decoder=loads)),
                ('status', fields.CharEnumField(description='STARTING: starting\nACTIVE: active\nSTALE: stale\nENDED: ended\nDISMISSED: dismissed', enum_type=ActivityStatus, max_length=10)),
                ('started_by', fields.CharField(max_length=10)),
                ('user_id', fields.CharField(null=True, db_index=True, max_length=200)),
                ('channel_id', fields.CharField(null=True, max_length=200)),
                ('channel_closed_at', fields.DatetimeField(null=True, auto_now=False, auto_now_add=False)),
                ('stale_date', fields.DatetimeField(null=True, auto_now=False, auto_now_add=False)),
                ('dismissal_date', fields.DatetimeField(null=True, auto_now=False, auto_now_add=False)),
                ('relevance_score', fields.FloatField(null=True)),
                ('last_timestamp', fields.BigIntField()),
                ('version', fields.BigIntField(default=1)),
                ('end_reason', fields.CharField(null=True, max_length=20)),
                ('created_at', fields.DatetimeField(db_index=True, auto_now=False, auto_now_add=True)),
                ('updated_at', fields.DatetimeField(auto_now=True, auto_now_add=False)),
                ('ended_at', fields.DatetimeField(null=True, auto_now=False, auto_now_add=False)),
            ],
            options={'table': 'activities', 'app': 'brik', 'indexes': [Index(fields=['status', 'created_at'])], 'pk_attr': 'id'},
            bases=['Model'],
        ),
        ops.CreateModel(
            name='ActivityToken',
            fields=[
                ('id', fields.BigIntField(generated=True, primary_key=True, unique=True, db_index=True)),
                ('activity', fields.ForeignKeyField('brik.Activity', source_field='activity_id', db_constraint=True, to_field='id', related_name='tokens', on_delete=OnDelete.CASCADE)),
                ('device', fields.ForeignKeyField('brik.Device', source_field='device_id', db_constraint=True, to_field='id', related_name='activity_tokens', on_delete=OnDelete.CASCADE)),
                ('platform', fields.CharField(max_length=10)),
                ('token_encrypted', fields.TextField(null=True, unique=False)),
                ('token_last_four', fields.CharField(null=True, max_length=4)),
                ('status', fields.CharEnumField(description='PENDING: pending\nACTIVE: active\nINVALID: invalid', enum_type=ActivityTokenStatus, max_length=10)),
                ('invalid_reason', fields.CharField(null=True, max_length=300)),
                ('created_at', fields.DatetimeField(auto_now=False, auto_now_add=True)),
                ('updated_at', fields.DatetimeField(auto_now=True, auto_now_add=False)),
            ],
            options={'table': 'activity_tokens', 'app': 'brik', 'unique_together': (('activity', 'device'),), 'pk_attr': 'id', 'table_description': 'How one activity reaches one device (see the module docstring).'},
            bases=['Model'],
        ),
        ops.AlterField(
            model_name='Delivery',
            name='status',
            field=fields.CharEnumField(default=DeliveryStatus.QUEUED, description='QUEUED: queued\nSENDING: sending\nDELIVERED: delivered\nFAILED: failed\nINVALID_TOKEN: invalid_token\nRATE_LIMITED: rate_limited\nCANCELED: canceled\nSUPERSEDED: superseded', enum_type=DeliveryStatus, max_length=16),
        ),
        ops.AddField(
            model_name='Delivery',
            name='activity_token',
            field=fields.ForeignKeyField('brik.ActivityToken', source_field='activity_token_id', null=True, db_constraint=True, to_field='id', related_name='deliveries', on_delete=OnDelete.SET_NULL),
        ),
        ops.AddField(
            model_name='Delivery',
            name='channel_id',
            field=fields.CharField(null=True, max_length=200),
        ),
        ops.AddField(
            model_name='Push',
            name='activity',
            field=fields.ForeignKeyField('brik.Activity', source_field='activity_id', null=True, db_constraint=True, to_field='id', related_name='pushes', on_delete=OnDelete.CASCADE),
        ),
    ]
