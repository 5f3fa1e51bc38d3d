"""Which secret key made each stored hash (zero-downtime rotation of ``BRIK_SECRET_KEY``).

A nullable ``pepper_id`` on every table that stores a peppered hash: API keys, personal access
tokens, sessions, invitations and devices (``controlplane/auth/peppers.py``). Rows written
before it have none: they were hashed with the one secret key the install had, and count as
resting on a previous key until they are used (or, devices, re-hashed by
``brik-cloud rotate-secret-key``). ``ALTER TABLE … ADD COLUMN`` of a nullable column, on both
dialects: no table rewrite on PostgreSQL.
"""

from tortoise import fields, migrations
from tortoise.migrations import operations as ops


class Migration(migrations.Migration):
    dependencies = [('brik', '0011_widget_tokens')]

    initial = False

    operations = [
        ops.AddField(
            model_name='ApiKey',
            name='pepper_id',
            field=fields.CharField(null=True, max_length=16),
        ),
        ops.AddField(
            model_name='Device',
            name='pepper_id',
            field=fields.CharField(null=True, max_length=16),
        ),
        ops.AddField(
            model_name='Invitation',
            name='pepper_id',
            field=fields.CharField(null=True, max_length=16),
        ),
        ops.AddField(
            model_name='PersonalAccessToken',
            name='pepper_id',
            field=fields.CharField(null=True, max_length=16),
        ),
        ops.AddField(
            model_name='Session',
            name='pepper_id',
            field=fields.CharField(null=True, max_length=16),
        ),
    ]
