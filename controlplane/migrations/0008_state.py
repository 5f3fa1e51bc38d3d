from tortoise import migrations
from tortoise.migrations import operations as ops
import functools
from controlplane.models.api_keys import KeyMode
from controlplane.models.ids import new_state_entry_id
from json import dumps, loads
from tortoise.fields.base import OnDelete
from tortoise import fields

class Migration(migrations.Migration):
    dependencies = [('brik', '0007_billing')]

    initial = False

    operations = [
        ops.CreateModel(
            name='StateEntry',
            fields=[
                ('id', fields.CharField(primary_key=True, default=new_state_entry_id, unique=True, db_index=True, max_length=32)),
                ('project', fields.ForeignKeyField('brik.Project', source_field='project_id', db_constraint=True, to_field='id', related_name='state_entries', on_delete=OnDelete.CASCADE)),
                ('mode', fields.CharEnumField(description='TEST: test\nLIVE: live', enum_type=KeyMode, max_length=10)),
                ('key', fields.CharField(max_length=256)),
                ('value', fields.TextField(unique=False)),
                ('public', fields.BooleanField(default=False)),
                ('version', fields.BigIntField(default=1)),
                ('size_bytes', fields.IntField()),
                ('expires_at', fields.DatetimeField(null=True, db_index=True, auto_now=False, auto_now_add=False)),
                ('created_at', fields.DatetimeField(auto_now=False, auto_now_add=False)),
                ('updated_at', fields.DatetimeField(auto_now=False, auto_now_add=False)),
            ],
            options={'table': 'state_entries', 'app': 'brik', 'unique_together': (('project', 'mode', 'key'),), 'pk_attr': 'id'},
            bases=['Model'],
        ),
        ops.CreateModel(
            name='StateUsage',
            fields=[
                ('id', fields.BigIntField(generated=True, primary_key=True, unique=True, db_index=True)),
                ('organization', fields.ForeignKeyField('brik.Organization', source_field='organization_id', db_constraint=True, to_field='id', related_name='state_usage', on_delete=OnDelete.CASCADE)),
                ('mode', fields.CharEnumField(description='TEST: test\nLIVE: live', enum_type=KeyMode, max_length=10)),
                ('bytes', fields.BigIntField(default=0)),
            ],
            options={'table': 'state_usage', 'app': 'brik', 'unique_together': (('organization', 'mode'),), 'pk_attr': 'id', 'table_description': 'Bytes of state one organization stores in one mode (entries not yet purged included).'},
            bases=['Model'],
        ),
        ops.AddField(
            model_name='Project',
            name='state_public_write_prefixes',
            field=fields.JSONField(null=True, default=list, encoder=functools.partial(dumps, separators=(',', ':')), decoder=loads),
        ),
    ]
