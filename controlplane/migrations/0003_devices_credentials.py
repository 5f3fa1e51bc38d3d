from tortoise import migrations
from tortoise.migrations import operations as ops
import functools
from controlplane.models.api_keys import KeyMode
from controlplane.models.credentials import ProviderName
from controlplane.models.devices import DeviceStatus, Platform
from controlplane.models.ids import new_credential_id, new_device_id
from json import dumps, loads
from tortoise.fields.base import OnDelete
from tortoise import fields
from tortoise.indexes import Index

class Migration(migrations.Migration):
    dependencies = [('brik', '0002_access')]

    initial = False

    operations = [
        ops.CreateModel(
            name='Device',
            fields=[
                ('id', fields.CharField(primary_key=True, default=new_device_id, unique=True, db_index=True, max_length=32)),
                ('project', fields.ForeignKeyField('brik.Project', source_field='project_id', db_constraint=True, to_field='id', related_name='devices', on_delete=OnDelete.CASCADE)),
                ('mode', fields.CharEnumField(description='TEST: test\nLIVE: live', enum_type=KeyMode, max_length=10)),
                ('platform', fields.CharEnumField(description='IOS: ios\nANDROID: android', enum_type=Platform, max_length=10)),
                ('token_hash', fields.CharField(max_length=64)),
                ('token_encrypted', fields.TextField(unique=False)),
                ('token_last_four', fields.CharField(max_length=4)),
                ('user_id', fields.CharField(null=True, db_index=True, max_length=200)),
                ('tags', fields.JSONField(default=list, encoder=functools.partial(dumps, separators=(',', ':')), decoder=loads)),
                ('live_activity_token_encrypted', fields.TextField(null=True, unique=False)),
                ('push_to_start_token_encrypted', fields.TextField(null=True, unique=False)),
                ('status', fields.CharEnumField(default=DeviceStatus.ACTIVE, description='ACTIVE: active\nINVALID: invalid', enum_type=DeviceStatus, max_length=10)),
                ('invalid_reason', fields.CharField(null=True, max_length=300)),
                ('invalidated_at', fields.DatetimeField(null=True, auto_now=False, auto_now_add=False)),
                ('created_at', fields.DatetimeField(auto_now=False, auto_now_add=True)),
                ('updated_at', fields.DatetimeField(auto_now=True, auto_now_add=False)),
            ],
            options={'table': 'devices', 'app': 'brik', 'unique_together': (('project', 'mode', 'token_hash'),), 'pk_attr': 'id'},
            bases=['Model'],
        ),
        ops.CreateModel(
            name='DeviceTag',
            fields=[
                ('id', fields.BigIntField(generated=True, primary_key=True, unique=True, db_index=True)),
                ('device', fields.ForeignKeyField('brik.Device', source_field='device_id', db_constraint=True, to_field='id', related_name='tag_rows', on_delete=OnDelete.CASCADE)),
                ('tag', fields.CharField(max_length=64)),
            ],
            options={'table': 'device_tags', 'app': 'brik', 'unique_together': (('device', 'tag'),), 'indexes': [Index(fields=['tag', 'device_id'])], 'pk_attr': 'id', 'table_description': 'One tag of one device: the index pushes ``to: {"tags": [...]}`` are resolved with.'},
            bases=['Model'],
        ),
        ops.CreateModel(
            name='ProviderCredential',
            fields=[
                ('id', fields.CharField(primary_key=True, default=new_credential_id, unique=True, db_index=True, max_length=32)),
                ('project', fields.ForeignKeyField('brik.Project', source_field='project_id', db_constraint=True, to_field='id', related_name='credentials', on_delete=OnDelete.CASCADE)),
                ('provider', fields.CharEnumField(description='APNS: apns\nFCM: fcm', enum_type=ProviderName, max_length=10)),
                ('secret_encrypted', fields.TextField(unique=False)),
                ('details', fields.JSONField(default=dict, encoder=functools.partial(dumps, separators=(',', ':')), decoder=loads)),
                ('fingerprint', fields.CharField(max_length=64)),
                ('version', fields.IntField(default=1)),
                ('created_at', fields.DatetimeField(auto_now=False, auto_now_add=True)),
                ('updated_at', fields.DatetimeField(auto_now=True, auto_now_add=False)),
            ],
            options={'table': 'provider_credentials', 'app': 'brik', 'unique_together': (('project', 'provider'),), 'pk_attr': 'id'},
            bases=['Model'],
        ),
    ]
