"""values.schema.json: a wrong value fails at install, and every setting has its place.

Each of the application's settings (controlplane/settings.py) is set through exactly one value:
a secret one through ``secrets``, ``database`` or ``redis`` (into a Secret), the worker's
metrics port by the chart, every other under ``config`` with the type and bounds the
application itself enforces — so a value the processes would refuse at start-up is refused by
``helm install`` instead.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import pytest
import yaml
from helm_python import Chart, HelmValuesError

from controlplane.settings import Settings
from tests.helm.conftest import CHART_DIR, MINIMAL, PRODUCTION, Rendered, merged

SCHEMA = json.loads((CHART_DIR / "values.schema.json").read_text())
CONFIG = SCHEMA["properties"]["config"]["properties"]
# Secret settings: the value that carries each.
SECRET_SETTINGS = {
    "secret_key": ("secrets", "secretKey"),
    "previous_secret_keys": ("secrets", "previousSecretKeys"),
    "encryption_keys": ("secrets", "encryptionKeys"),
    "oidc_client_secret": ("secrets", "oidcClientSecret"),
    "smtp_url": ("secrets", "smtpUrl"),
    "stripe_secret_key": ("secrets", "stripeSecretKey"),
    "stripe_webhook_secret": ("secrets", "stripeWebhookSecret"),
    "database_url": ("database", "url"),
    "redis_url": ("redis", "url"),
}
CHART_SETTINGS = {"worker_metrics_port"}  # worker.metrics.port


def camel(name: str) -> str:
    head, *rest = name.split("_")
    return head + "".join(part.capitalize() for part in rest)


def expected_property(name: str) -> dict[str, Any]:
    """The JSON-schema constraints pydantic derives for a setting, without its null branch."""
    spec = Settings.model_json_schema()["properties"][name]
    if "anyOf" in spec:
        (spec,) = [branch for branch in spec["anyOf"] if branch.get("type") != "null"]
    keys = ("type", "enum", "minimum", "maximum", "exclusiveMinimum", "items")
    return {key: spec[key] for key in keys if key in spec}


def test_every_setting_has_exactly_one_place_in_the_values() -> None:
    fields = set(Settings.model_fields)
    in_config = {name for name in fields if camel(name) in CONFIG}
    assert in_config | set(SECRET_SETTINGS) | CHART_SETTINGS == fields
    assert not in_config & (set(SECRET_SETTINGS) | CHART_SETTINGS)
    assert set(CONFIG) == {camel(name) for name in in_config}, "config names no setting"
    for section, key in SECRET_SETTINGS.values():
        assert key in SCHEMA["properties"][section]["properties"]


@pytest.mark.parametrize(
    "name", sorted(set(Settings.model_fields) - set(SECRET_SETTINGS) - CHART_SETTINGS)
)
def test_config_values_have_the_type_and_bounds_of_their_setting(name: str) -> None:
    written = CONFIG[camel(name)]
    for key, value in expected_property(name).items():
        if key in ("minimum", "maximum") and "enum" in written:
            continue  # an enum says more (reconcileEverySeconds: the divisors of 60)
        assert written.get(key) == value, f"config.{camel(name)}: {key} should be {value!r}"
    assert written.get("description"), f"config.{camel(name)} has no description"


def test_each_secret_value_lands_in_the_chart_secret_under_its_variable(
    render: Callable[..., Rendered],
) -> None:
    values = merged(
        MINIMAL,
        {
            "secrets": {
                "secretKey": "k" * 40,
                "previousSecretKeys": ["o" * 40, "p" * 40],
                "encryptionKeys": ["A" * 43 + "="],
                "oidcClientSecret": "oidc",
                "smtpUrl": "smtps://user:pw@smtp.internal:465",
                "stripeSecretKey": "sk_test_1",
                "stripeWebhookSecret": "whsec_1",
            }
        },
    )
    data = render(values).secret_data("brik-brik-cloud")
    assert set(data) == {f"BRIK_{name.upper()}" for name in SECRET_SETTINGS}
    for name, (section, key) in SECRET_SETTINGS.items():
        given = values[section][key]
        assert data[f"BRIK_{name.upper()}"] == (
            ",".join(given) if isinstance(given, list) else given
        )


@pytest.mark.parametrize(
    ("values", "where"),
    [
        ({"config": {"workerMaxJobs": "200"}}, "/config/workerMaxJobs"),
        ({"config": {"workerMaxJobs": 0}}, "/config/workerMaxJobs"),
        ({"config": {"logLevel": "TRACE"}}, "/config/logLevel"),
        ({"config": {"reconcileEverySeconds": 7}}, "/config/reconcileEverySeconds"),
        ({"config": {"mailSender": "log"}}, "/config/mailSender"),
        ({"config": {"apnsPort": 70000}}, "/config/apnsPort"),
        ({"config": {"workerMetricsPort": 9000}}, "/config"),
        ({"config": {"secretKey": "in-a-config-map"}}, "/config"),
        ({"confg": {"logLevel": "INFO"}}, "confg"),
        ({"api": {"replicas": 3}}, "/api"),
        ({"secrets": {"secretKey": "too-short"}}, "/secrets/secretKey"),
        ({"secrets": {"previousSecretKeys": ["too-short"]}}, "/secrets/previousSecretKeys/0"),
        ({"secrets": {"previousSecretKeys": "o" * 40}}, "/secrets/previousSecretKeys"),
        ({"secrets": {"encryptionKeys": ["not-a-fernet-key"]}}, "/secrets/encryptionKeys/0"),
        ({"database": {"url": "mysql://db/brik"}}, "/database/url"),
        ({"redis": {"url": "cache.internal:6379"}}, "/redis/url"),
        ({"image": {"digest": "latest"}}, "/image/digest"),
        (
            {"worker": {"terminationGracePeriodSeconds": 10}},
            "/worker/terminationGracePeriodSeconds",
        ),
        (
            {"worker": {"autoscaling": {"keda": {"redisAddress": "redis://cache:6379"}}}},
            "redisAddress",
        ),
        ({"api": {"podAntiAffinityPreset": "strict"}}, "/api/podAntiAffinityPreset"),
        ({"api": {"forwardedAllowIps": "10.0.0.0/8; x"}}, "/api/forwardedAllowIps"),
        ({"ingress": {"hosts": [{"host": "a.example.com", "paths": [{"path": "api"}]}]}}, "path"),
        ({"tests": {"timeoutSeconds": 60}}, "/tests/timeoutSeconds"),
        ({"bootstrap": {"adminEmail": "admin"}}, "/bootstrap/adminEmail"),
    ],
)
def test_a_wrong_value_is_refused_at_install(
    values: dict[str, Any], where: str, chart: Chart
) -> None:
    with pytest.raises(HelmValuesError, match=where):
        chart.validate_schema(merged(chart.values, MINIMAL, values))


@pytest.mark.parametrize("extra", [{}, PRODUCTION], ids=["defaults", "production"])
def test_the_shipped_values_are_accepted(extra: dict[str, Any], chart: Chart) -> None:
    chart.validate_schema(merged(chart.values, MINIMAL, extra))
    defaults = yaml.safe_load((CHART_DIR / "values.yaml").read_text())
    assert defaults == chart.values
