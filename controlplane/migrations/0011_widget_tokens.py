"""WidgetKit push tokens (issue 13, widgets): one per device, encrypted like the other tokens.

A nullable column added on both dialects (``ALTER TABLE … ADD COLUMN``); existing devices have
none until their app registers one.
"""

from tortoise import fields, migrations
from tortoise.migrations import operations as ops


class Migration(migrations.Migration):
    dependencies = [('brik', '0010_activities')]

    initial = False

    operations = [
        ops.AddField(
            model_name='Device',
            name='widget_push_token_encrypted',
            field=fields.TextField(null=True, unique=False),
        ),
    ]
