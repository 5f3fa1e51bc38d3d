from tortoise import migrations
from tortoise.migrations import operations as ops
import functools
from controlplane.models.api_keys import KeyKind, KeyMode
from controlplane.models.ids import new_key_id, new_membership_id, new_org_id, new_project_id, new_user_id
from controlplane.models.tenancy import Plan, Role
from json import dumps, loads
from tortoise.fields.base import OnDelete
from tortoise import fields

class Migration(migrations.Migration):
    initial = True

    operations = [
        ops.CreateModel(
            name='Organization',
            fields=[
                ('id', fields.CharField(primary_key=True, default=new_org_id, unique=True, db_index=True, max_length=32)),
                ('name', fields.CharField(max_length=200)),
                ('plan', fields.CharEnumField(default=Plan.FREE, description='FREE: free\nPRO: pro\nENTERPRISE: enterprise', enum_type=Plan, max_length=20)),
                ('created_at', fields.DatetimeField(auto_now=False, auto_now_add=True)),
            ],
            options={'table': 'organizations', 'app': 'brik', 'pk_attr': 'id', 'table_description': 'A tenant: owns projects, a plan and the bill.'},
            bases=['Model'],
        ),
        ops.CreateModel(
            name='Project',
            fields=[
                ('id', fields.CharField(primary_key=True, default=new_project_id, unique=True, db_index=True, max_length=32)),
                ('organization', fields.ForeignKeyField('brik.Organization', source_field='organization_id', db_constraint=True, to_field='id', related_name='projects', on_delete=OnDelete.CASCADE)),
                ('name', fields.CharField(max_length=200)),
                ('created_at', fields.DatetimeField(auto_now=False, auto_now_add=True)),
            ],
            options={'table': 'projects', 'app': 'brik', 'pk_attr': 'id', 'table_description': 'One app (or family of apps) of an organization: keys, credentials and devices hang here.'},
            bases=['Model'],
        ),
        ops.CreateModel(
            name='ApiKey',
            fields=[
                ('id', fields.CharField(primary_key=True, default=new_key_id, unique=True, db_index=True, max_length=32)),
                ('project', fields.ForeignKeyField('brik.Project', source_field='project_id', db_constraint=True, to_field='id', related_name='api_keys', on_delete=OnDelete.CASCADE)),
                ('name', fields.CharField(default='', max_length=200)),
                ('kind', fields.CharEnumField(description='PUBLISHABLE: publishable\nSECRET: secret', enum_type=KeyKind, max_length=20)),
                ('mode', fields.CharEnumField(description='TEST: test\nLIVE: live', enum_type=KeyMode, max_length=10)),
                ('scopes', fields.JSONField(default=list, encoder=functools.partial(dumps, separators=(',', ':')), decoder=loads)),
                ('key_hash', fields.CharField(unique=True, max_length=64)),
                ('display_prefix', fields.CharField(max_length=24)),
                ('last_four', fields.CharField(max_length=4)),
                ('expires_at', fields.DatetimeField(null=True, auto_now=False, auto_now_add=False)),
                ('revoked_at', fields.DatetimeField(null=True, auto_now=False, auto_now_add=False)),
                ('last_used_at', fields.DatetimeField(null=True, auto_now=False, auto_now_add=False)),
                ('created_at', fields.DatetimeField(auto_now=False, auto_now_add=True)),
            ],
            options={'table': 'api_keys', 'app': 'brik', 'pk_attr': 'id'},
            bases=['Model'],
        ),
        ops.CreateModel(
            name='User',
            fields=[
                ('id', fields.CharField(primary_key=True, default=new_user_id, unique=True, db_index=True, max_length=32)),
                ('email', fields.CharField(unique=True, max_length=320)),
                ('name', fields.CharField(default='', max_length=200)),
                ('password_hash', fields.CharField(null=True, max_length=255)),
                ('is_superuser', fields.BooleanField(default=False)),
                ('created_at', fields.DatetimeField(auto_now=False, auto_now_add=True)),
            ],
            options={'table': 'users', 'app': 'brik', 'pk_attr': 'id', 'table_description': 'A person who signs in to the dashboard or the management API.'},
            bases=['Model'],
        ),
        ops.CreateModel(
            name='Membership',
            fields=[
                ('id', fields.CharField(primary_key=True, default=new_membership_id, unique=True, db_index=True, max_length=32)),
                ('organization', fields.ForeignKeyField('brik.Organization', source_field='organization_id', db_constraint=True, to_field='id', related_name='memberships', on_delete=OnDelete.CASCADE)),
                ('user', fields.ForeignKeyField('brik.User', source_field='user_id', db_constraint=True, to_field='id', related_name='memberships', on_delete=OnDelete.CASCADE)),
                ('role', fields.CharEnumField(description='OWNER: owner\nADMIN: admin\nDEVELOPER: developer\nVIEWER: viewer', enum_type=Role, max_length=20)),
                ('created_at', fields.DatetimeField(auto_now=False, auto_now_add=True)),
            ],
            options={'table': 'memberships', 'app': 'brik', 'unique_together': (('organization', 'user'),), 'pk_attr': 'id', 'table_description': "A user's role in one organization."},
            bases=['Model'],
        ),
        ops.CreateModel(
            name='WorkerHeartbeat',
            fields=[
                ('worker_id', fields.CharField(primary_key=True, unique=True, db_index=True, max_length=100)),
                ('last_probe_id', fields.CharField(max_length=64)),
                ('beats', fields.BigIntField(default=0)),
                ('last_seen_at', fields.DatetimeField(auto_now=False, auto_now_add=False)),
            ],
            options={'table': 'worker_heartbeats', 'app': 'brik', 'pk_attr': 'worker_id', 'table_description': 'One row per worker process, refreshed by the ``heartbeat`` job.'},
            bases=['Model'],
        ),
    ]
