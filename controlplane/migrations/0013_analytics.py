"""Analytics (issue 16): raw events as loaded from the Redis buffer, unique per project, mode
and the app's event id, and their hourly and daily rollups (counts by name and dimension)."""

from tortoise import migrations
from tortoise.migrations import operations as ops
import functools
from controlplane.models.analytics import Dimension, Granularity
from controlplane.models.api_keys import KeyMode
from json import dumps, loads
from tortoise.fields.base import OnDelete
from tortoise import fields
from tortoise.indexes import Index

class Migration(migrations.Migration):
    dependencies = [('brik', '0012_secret_key_rotation')]

    initial = False

    operations = [
        ops.CreateModel(
            name='AnalyticsEvent',
            fields=[
                ('id', fields.BigIntField(generated=True, primary_key=True, unique=True, db_index=True)),
                ('project', fields.ForeignKeyField('brik.Project', source_field='project_id', db_constraint=True, to_field='id', related_name='analytics_events', on_delete=OnDelete.CASCADE)),
                ('mode', fields.CharEnumField(description='TEST: test\nLIVE: live', enum_type=KeyMode, max_length=10)),
                ('client_id', fields.CharField(max_length=64)),
                ('name', fields.CharField(max_length=80)),
                ('occurred_at', fields.DatetimeField(auto_now=False, auto_now_add=False)),
                ('received_at', fields.DatetimeField(auto_now=False, auto_now_add=False)),
                ('device_id', fields.CharField(null=True, max_length=128)),
                ('user_id', fields.CharField(null=True, max_length=200)),
                ('platform', fields.CharField(null=True, max_length=10)),
                ('app_version', fields.CharField(null=True, max_length=32)),
                ('os_version', fields.CharField(null=True, max_length=32)),
                ('device_model', fields.CharField(null=True, max_length=64)),
                ('locale', fields.CharField(null=True, max_length=35)),
                ('country', fields.CharField(null=True, max_length=2)),
                ('widget', fields.CharField(null=True, max_length=128)),
                ('action', fields.CharField(null=True, max_length=128)),
                ('activity_id', fields.CharField(null=True, max_length=64)),
                ('push_id', fields.CharField(null=True, max_length=32)),
                ('error_code', fields.CharField(null=True, max_length=128)),
                ('error_message', fields.TextField(null=True, unique=False)),
                ('properties', fields.JSONField(null=True, encoder=functools.partial(dumps, separators=(',', ':')), decoder=loads)),
            ],
            options={'table': 'analytics_events', 'app': 'brik', 'unique_together': (('project', 'mode', 'client_id'),), 'indexes': [Index(fields=['project_id', 'mode', 'occurred_at'])], 'pk_attr': 'id', 'table_description': 'One event an app reported (see ``docs/analytics.md`` for each field).'},
            bases=['Model'],
        ),
        ops.CreateModel(
            name='AnalyticsRollup',
            fields=[
                ('id', fields.BigIntField(generated=True, primary_key=True, unique=True, db_index=True)),
                ('project', fields.ForeignKeyField('brik.Project', source_field='project_id', db_constraint=True, to_field='id', related_name='analytics_rollups', on_delete=OnDelete.CASCADE)),
                ('mode', fields.CharEnumField(description='TEST: test\nLIVE: live', enum_type=KeyMode, max_length=10)),
                ('granularity', fields.CharEnumField(description='HOUR: hour\nDAY: day', enum_type=Granularity, max_length=4)),
                ('bucket', fields.DatetimeField(auto_now=False, auto_now_add=False)),
                ('name', fields.CharField(max_length=80)),
                ('dimension', fields.CharEnumField(description='ALL: all\nWIDGET: widget\nPLATFORM: platform\nOS_VERSION: os_version\nDEVICE_MODEL: device_model\nCOUNTRY: country\nAPP_VERSION: app_version', enum_type=Dimension, max_length=16)),
                ('value', fields.CharField(max_length=128)),
                ('count', fields.BigIntField(default=0)),
            ],
            options={'table': 'analytics_rollups', 'app': 'brik', 'unique_together': (('project', 'mode', 'granularity', 'bucket', 'name', 'dimension', 'value'),), 'indexes': [Index(fields=['granularity', 'bucket'])], 'pk_attr': 'id', 'table_description': "Events of one name in one bucket, counted by one dimension's value."},
            bases=['Model'],
        ),
    ]
