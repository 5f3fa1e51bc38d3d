from tortoise import migrations
from tortoise.migrations import operations as ops
from controlplane.models.api_keys import KeyMode
from controlplane.models.usage import UsageMetric
from tortoise.fields.base import OnDelete
from tortoise import fields

class Migration(migrations.Migration):
    dependencies = [('brik', '0005_reconcile_indexes')]

    initial = False

    operations = [
        ops.CreateModel(
            name='UsageAlert',
            fields=[
                ('id', fields.BigIntField(generated=True, primary_key=True, unique=True, db_index=True)),
                ('organization', fields.ForeignKeyField('brik.Organization', source_field='organization_id', db_constraint=True, to_field='id', related_name='usage_alerts', on_delete=OnDelete.CASCADE)),
                ('period_start', fields.DateField()),
                ('mode', fields.CharEnumField(description='TEST: test\nLIVE: live', enum_type=KeyMode, max_length=10)),
                ('metric', fields.CharEnumField(description='PUSHES: pushes\nAPI_REQUESTS: api_requests\nSTATE_BYTES: state_bytes', enum_type=UsageMetric, max_length=20)),
                ('percent', fields.IntField()),
                ('created_at', fields.DatetimeField(auto_now=False, auto_now_add=True)),
            ],
            options={'table': 'usage_alerts', 'app': 'brik', 'unique_together': (('organization', 'period_start', 'mode', 'metric', 'percent'),), 'pk_attr': 'id', 'table_description': 'A quota warning (80 or 100 percent) already sent for a period: each goes out once.'},
            bases=['Model'],
        ),
        ops.CreateModel(
            name='UsageDay',
            fields=[
                ('id', fields.BigIntField(generated=True, primary_key=True, unique=True, db_index=True)),
                ('organization', fields.ForeignKeyField('brik.Organization', source_field='organization_id', db_constraint=True, to_field='id', related_name='usage_days', on_delete=OnDelete.CASCADE)),
                ('day', fields.DateField()),
                ('mode', fields.CharEnumField(description='TEST: test\nLIVE: live', enum_type=KeyMode, max_length=10)),
                ('metric', fields.CharEnumField(description='PUSHES: pushes\nAPI_REQUESTS: api_requests\nSTATE_BYTES: state_bytes', enum_type=UsageMetric, max_length=20)),
                ('value', fields.BigIntField(default=0)),
            ],
            options={'table': 'usage_days', 'app': 'brik', 'unique_together': (('organization', 'day', 'mode', 'metric'),), 'pk_attr': 'id', 'table_description': "One metric's total for one organization, UTC day and mode (the series in the API)."},
            bases=['Model'],
        ),
        ops.CreateModel(
            name='UsagePeriod',
            fields=[
                ('id', fields.BigIntField(generated=True, primary_key=True, unique=True, db_index=True)),
                ('organization', fields.ForeignKeyField('brik.Organization', source_field='organization_id', db_constraint=True, to_field='id', related_name='usage_periods', on_delete=OnDelete.CASCADE)),
                ('period_start', fields.DateField()),
                ('mode', fields.CharEnumField(description='TEST: test\nLIVE: live', enum_type=KeyMode, max_length=10)),
                ('pushes', fields.BigIntField(default=0)),
                ('overage_reported', fields.BigIntField(default=0)),
            ],
            options={'table': 'usage_periods', 'app': 'brik', 'unique_together': (('organization', 'period_start', 'mode'),), 'pk_attr': 'id', 'table_description': 'Pushes accepted for one organization, calendar month (UTC) and mode.'},
            bases=['Model'],
        ),
    ]
