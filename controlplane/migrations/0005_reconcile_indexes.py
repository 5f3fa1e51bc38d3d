from tortoise import migrations
from tortoise.migrations import operations as ops
from tortoise.indexes import Index

class Migration(migrations.Migration):
    dependencies = [('brik', '0004_pushes')]

    initial = False

    operations = [
        ops.RemoveIndex(
            model_name='Delivery',
            name=None,
            fields=['status', 'lease_until'],
        ),
        ops.AddIndex(
            model_name='Push',
            index=Index(fields=['status', 'send_at']),
        ),
    ]
