from tortoise import migrations
from tortoise.migrations import operations as ops
from controlplane.models.tenancy import Plan, PlanSource
from tortoise.fields.base import OnDelete
from tortoise import fields

class Migration(migrations.Migration):
    dependencies = [('brik', '0006_usage')]

    initial = False

    operations = [
        ops.CreateModel(
            name='MeterReport',
            fields=[
                ('id', fields.BigIntField(generated=True, primary_key=True, unique=True, db_index=True)),
                ('organization', fields.ForeignKeyField('brik.Organization', source_field='organization_id', db_constraint=True, to_field='id', related_name='meter_reports', on_delete=OnDelete.CASCADE)),
                ('customer_id', fields.CharField(max_length=255)),
                ('period_start', fields.DateField()),
                ('identifier', fields.CharField(unique=True, max_length=100)),
                ('value', fields.BigIntField()),
                ('timestamp', fields.DatetimeField(auto_now=False, auto_now_add=False)),
                ('sent_at', fields.DatetimeField(null=True, auto_now=False, auto_now_add=False)),
                ('created_at', fields.DatetimeField(auto_now=False, auto_now_add=True)),
            ],
            options={'table': 'meter_reports', 'app': 'brik', 'pk_attr': 'id', 'table_description': 'Overage pushes reported (or about to be) to a Stripe meter as one meter event.'},
            bases=['Model'],
        ),
        ops.CreateModel(
            name='StripeEvent',
            fields=[
                ('id', fields.CharField(primary_key=True, unique=True, db_index=True, max_length=255)),
                ('type', fields.CharField(max_length=100)),
                ('received_at', fields.DatetimeField(auto_now=False, auto_now_add=True)),
            ],
            options={'table': 'stripe_events', 'app': 'brik', 'pk_attr': 'id', 'table_description': 'A webhook event already processed: each is acted on once.'},
            bases=['Model'],
        ),
        ops.CreateModel(
            name='Subscription',
            fields=[
                ('id', fields.CharField(primary_key=True, unique=True, db_index=True, max_length=255)),
                ('organization', fields.ForeignKeyField('brik.Organization', source_field='organization_id', db_constraint=True, to_field='id', related_name='subscriptions', on_delete=OnDelete.CASCADE)),
                ('customer_id', fields.CharField(max_length=255)),
                ('status', fields.CharField(max_length=40)),
                ('price_id', fields.CharField(null=True, max_length=255)),
                ('plan', fields.CharEnumField(null=True, description='FREE: free\nPRO: pro\nENTERPRISE: enterprise', enum_type=Plan, max_length=20)),
                ('current_period_start', fields.DatetimeField(null=True, auto_now=False, auto_now_add=False)),
                ('current_period_end', fields.DatetimeField(null=True, auto_now=False, auto_now_add=False)),
                ('cancel_at_period_end', fields.BooleanField(default=False)),
                ('canceled_at', fields.DatetimeField(null=True, auto_now=False, auto_now_add=False)),
                ('past_due_since', fields.DatetimeField(null=True, auto_now=False, auto_now_add=False)),
                ('updated_at', fields.DatetimeField(auto_now=True, auto_now_add=False)),
            ],
            options={'table': 'billing_subscriptions', 'app': 'brik', 'pk_attr': 'id', 'table_description': "An organization's Stripe subscription as last read from Stripe."},
            bases=['Model'],
        ),
        ops.AddField(
            model_name='Organization',
            name='plan_source',
            field=fields.CharEnumField(default=PlanSource.DEFAULT, description='DEFAULT: default\nBILLING: billing\nADMIN: admin', enum_type=PlanSource, max_length=20),
        ),
        ops.AddField(
            model_name='Organization',
            name='stripe_customer_id',
            field=fields.CharField(null=True, unique=True, max_length=255),
        ),
    ]
