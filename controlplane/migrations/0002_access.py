from tortoise import migrations
from tortoise.migrations import operations as ops
import functools
from controlplane.models.ids import new_access_token_id, new_audit_event_id, new_invitation_id, new_notification_id, new_session_id
from controlplane.models.tenancy import Role
from json import dumps, loads
from tortoise.fields.base import OnDelete
from tortoise import fields

class Migration(migrations.Migration):
    dependencies = [('brik', '0001_initial')]

    initial = False

    operations = [
        ops.CreateModel(
            name='AuditEvent',
            fields=[
                ('id', fields.CharField(primary_key=True, default=new_audit_event_id, unique=True, db_index=True, max_length=32)),
                ('organization_id', fields.CharField(null=True, db_index=True, max_length=32)),
                ('actor_type', fields.CharField(max_length=20)),
                ('actor_id', fields.CharField(null=True, max_length=32)),
                ('actor_email', fields.CharField(null=True, max_length=320)),
                ('action', fields.CharField(db_index=True, max_length=64)),
                ('target_type', fields.CharField(null=True, max_length=32)),
                ('target_id', fields.CharField(null=True, max_length=64)),
                ('ip', fields.CharField(default='', max_length=64)),
                ('user_agent', fields.CharField(default='', max_length=400)),
                ('details', fields.JSONField(default=dict, encoder=functools.partial(dumps, separators=(',', ':')), decoder=loads)),
                ('created_at', fields.DatetimeField(db_index=True, auto_now=False, auto_now_add=True)),
            ],
            options={'table': 'audit_events', 'app': 'brik', 'pk_attr': 'id', 'table_description': 'One sensitive action.'},
            bases=['Model'],
        ),
        ops.CreateModel(
            name='Invitation',
            fields=[
                ('id', fields.CharField(primary_key=True, default=new_invitation_id, unique=True, db_index=True, max_length=32)),
                ('organization', fields.ForeignKeyField('brik.Organization', source_field='organization_id', db_constraint=True, to_field='id', related_name='invitations', on_delete=OnDelete.CASCADE)),
                ('email', fields.CharField(max_length=320)),
                ('role', fields.CharEnumField(description='OWNER: owner\nADMIN: admin\nDEVELOPER: developer\nVIEWER: viewer', enum_type=Role, max_length=20)),
                ('token_hash', fields.CharField(unique=True, max_length=64)),
                ('invited_by', fields.ForeignKeyField('brik.User', source_field='invited_by_id', null=True, db_constraint=True, to_field='id', related_name='invitations_sent', on_delete=OnDelete.SET_NULL)),
                ('created_at', fields.DatetimeField(auto_now=False, auto_now_add=True)),
                ('expires_at', fields.DatetimeField(auto_now=False, auto_now_add=False)),
                ('accepted_at', fields.DatetimeField(null=True, auto_now=False, auto_now_add=False)),
                ('accepted_by', fields.ForeignKeyField('brik.User', source_field='accepted_by_id', null=True, db_constraint=True, to_field='id', related_name='invitations_accepted', on_delete=OnDelete.SET_NULL)),
                ('revoked_at', fields.DatetimeField(null=True, auto_now=False, auto_now_add=False)),
            ],
            options={'table': 'invitations', 'app': 'brik', 'pk_attr': 'id'},
            bases=['Model'],
        ),
        ops.CreateModel(
            name='Notification',
            fields=[
                ('id', fields.CharField(primary_key=True, default=new_notification_id, unique=True, db_index=True, max_length=32)),
                ('organization_id', fields.CharField(null=True, db_index=True, max_length=32)),
                ('channel', fields.CharField(default='email', max_length=20)),
                ('kind', fields.CharField(max_length=64)),
                ('recipient', fields.CharField(max_length=320)),
                ('subject', fields.CharField(max_length=300)),
                ('body_encrypted', fields.TextField(unique=False)),
                ('sender', fields.CharField(max_length=64)),
                ('status', fields.CharField(max_length=20)),
                ('error', fields.TextField(default='', unique=False)),
                ('created_at', fields.DatetimeField(auto_now=False, auto_now_add=True)),
            ],
            options={'table': 'notifications', 'app': 'brik', 'pk_attr': 'id'},
            bases=['Model'],
        ),
        ops.CreateModel(
            name='PersonalAccessToken',
            fields=[
                ('id', fields.CharField(primary_key=True, default=new_access_token_id, unique=True, db_index=True, max_length=32)),
                ('user', fields.ForeignKeyField('brik.User', source_field='user_id', db_constraint=True, to_field='id', related_name='access_tokens', on_delete=OnDelete.CASCADE)),
                ('name', fields.CharField(max_length=200)),
                ('token_hash', fields.CharField(unique=True, max_length=64)),
                ('display_prefix', fields.CharField(max_length=24)),
                ('last_four', fields.CharField(max_length=4)),
                ('expires_at', fields.DatetimeField(null=True, auto_now=False, auto_now_add=False)),
                ('revoked_at', fields.DatetimeField(null=True, auto_now=False, auto_now_add=False)),
                ('last_used_at', fields.DatetimeField(null=True, auto_now=False, auto_now_add=False)),
                ('created_at', fields.DatetimeField(auto_now=False, auto_now_add=True)),
            ],
            options={'table': 'personal_access_tokens', 'app': 'brik', 'pk_attr': 'id', 'table_description': 'A token acting as its user on the management API (automation, CI).'},
            bases=['Model'],
        ),
        ops.CreateModel(
            name='Session',
            fields=[
                ('id', fields.CharField(primary_key=True, default=new_session_id, unique=True, db_index=True, max_length=32)),
                ('user', fields.ForeignKeyField('brik.User', source_field='user_id', db_constraint=True, to_field='id', related_name='sessions', on_delete=OnDelete.CASCADE)),
                ('token_hash', fields.CharField(unique=True, max_length=64)),
                ('method', fields.CharField(max_length=20)),
                ('ip', fields.CharField(default='', max_length=64)),
                ('user_agent', fields.CharField(default='', max_length=400)),
                ('created_at', fields.DatetimeField(auto_now=False, auto_now_add=True)),
                ('expires_at', fields.DatetimeField(auto_now=False, auto_now_add=False)),
                ('revoked_at', fields.DatetimeField(null=True, auto_now=False, auto_now_add=False)),
            ],
            options={'table': 'sessions', 'app': 'brik', 'pk_attr': 'id', 'table_description': 'A signed-in browser (or API client using the cookie), see controlplane.auth.sessions.'},
            bases=['Model'],
        ),
    ]
