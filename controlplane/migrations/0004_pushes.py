from tortoise import migrations
from tortoise.migrations import operations as ops
import functools
from controlplane.models.api_keys import KeyMode
from controlplane.models.ids import new_delivery_id, new_push_id
from controlplane.models.pushes import DeliveryStatus, PushStatus
from json import dumps, loads
from tortoise.fields.base import OnDelete
from tortoise import fields
from tortoise.indexes import Index

class Migration(migrations.Migration):
    dependencies = [('brik', '0003_devices_credentials')]

    initial = False

    operations = [
        ops.CreateModel(
            name='IdempotencyKey',
            fields=[
                ('id', fields.BigIntField(generated=True, primary_key=True, unique=True, db_index=True)),
                ('project', fields.ForeignKeyField('brik.Project', source_field='project_id', db_constraint=True, to_field='id', related_name='idempotency_keys', on_delete=OnDelete.CASCADE)),
                ('key', fields.CharField(max_length=255)),
                ('request_hash', fields.CharField(max_length=64)),
                ('status', fields.CharField(max_length=12)),
                ('response_status', fields.IntField(null=True)),
                ('response_body', fields.JSONField(null=True, encoder=functools.partial(dumps, separators=(',', ':')), decoder=loads)),
                ('created_at', fields.DatetimeField(auto_now=False, auto_now_add=True)),
                ('expires_at', fields.DatetimeField(db_index=True, auto_now=False, auto_now_add=False)),
            ],
            options={'table': 'idempotency_keys', 'app': 'brik', 'unique_together': (('project', 'key'),), 'pk_attr': 'id', 'table_description': 'The first answer to a request with an ``Idempotency-Key``, replayed for its retries.'},
            bases=['Model'],
        ),
        ops.CreateModel(
            name='Push',
            fields=[
                ('id', fields.CharField(primary_key=True, default=new_push_id, unique=True, db_index=True, max_length=32)),
                ('project', fields.ForeignKeyField('brik.Project', source_field='project_id', db_constraint=True, to_field='id', related_name='pushes', on_delete=OnDelete.CASCADE)),
                ('mode', fields.CharEnumField(description='TEST: test\nLIVE: live', enum_type=KeyMode, max_length=10)),
                ('kind', fields.CharField(max_length=20)),
                ('content', fields.JSONField(encoder=functools.partial(dumps, separators=(',', ':')), decoder=loads)),
                ('target', fields.JSONField(encoder=functools.partial(dumps, separators=(',', ':')), decoder=loads)),
                ('status', fields.CharEnumField(description='SCHEDULED: scheduled\nQUEUED: queued\nSENDING: sending\nCOMPLETED: completed\nCANCELED: canceled', enum_type=PushStatus, max_length=12)),
                ('collapse_id', fields.CharField(null=True, max_length=64)),
                ('send_at', fields.DatetimeField(null=True, auto_now=False, auto_now_add=False)),
                ('recipients', fields.IntField(default=0)),
                ('created_at', fields.DatetimeField(db_index=True, auto_now=False, auto_now_add=True)),
                ('completed_at', fields.DatetimeField(null=True, auto_now=False, auto_now_add=False)),
                ('canceled_at', fields.DatetimeField(null=True, auto_now=False, auto_now_add=False)),
            ],
            options={'table': 'pushes', 'app': 'brik', 'pk_attr': 'id'},
            bases=['Model'],
        ),
        ops.CreateModel(
            name='Delivery',
            fields=[
                ('id', fields.CharField(primary_key=True, default=new_delivery_id, unique=True, db_index=True, max_length=32)),
                ('push', fields.ForeignKeyField('brik.Push', source_field='push_id', db_constraint=True, to_field='id', related_name='deliveries', on_delete=OnDelete.CASCADE)),
                ('device', fields.ForeignKeyField('brik.Device', source_field='device_id', null=True, db_constraint=True, to_field='id', related_name='deliveries', on_delete=OnDelete.SET_NULL)),
                ('provider', fields.CharField(max_length=10)),
                ('platform', fields.CharField(max_length=10)),
                ('apns_id', fields.CharField(max_length=36)),
                ('status', fields.CharEnumField(default=DeliveryStatus.QUEUED, description='QUEUED: queued\nSENDING: sending\nDELIVERED: delivered\nFAILED: failed\nINVALID_TOKEN: invalid_token\nRATE_LIMITED: rate_limited\nCANCELED: canceled', enum_type=DeliveryStatus, max_length=16)),
                ('reason', fields.CharField(null=True, max_length=500)),
                ('attempts', fields.IntField(default=0)),
                ('lease_token', fields.CharField(null=True, max_length=32)),
                ('lease_until', fields.DatetimeField(null=True, auto_now=False, auto_now_add=False)),
                ('next_attempt_at', fields.DatetimeField(null=True, auto_now=False, auto_now_add=False)),
                ('created_at', fields.DatetimeField(auto_now=False, auto_now_add=True)),
                ('sent_at', fields.DatetimeField(null=True, auto_now=False, auto_now_add=False)),
                ('completed_at', fields.DatetimeField(null=True, auto_now=False, auto_now_add=False)),
            ],
            options={'table': 'deliveries', 'app': 'brik', 'indexes': [Index(fields=['status', 'lease_until']), Index(fields=['push_id', 'status'])], 'pk_attr': 'id'},
            bases=['Model'],
        ),
    ]
