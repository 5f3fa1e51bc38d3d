"""What a platform team relies on in the chart, checked on its offline rendering.

Not "it renders": the manifests are valid Kubernetes objects for the three newest versions
kubernetes-validate knows; migrations run as a hook that finishes before the new pods start;
no secret is ever in a plain environment value, a ConfigMap or NOTES; every pod runs
non-root on a read-only root filesystem; probes point where the processes answer; PDBs select
their pods; and the pods roll when a secret or a setting changes.
"""

from __future__ import annotations

import base64
from collections.abc import Callable, Iterator
from typing import Any

import kubernetes_validate
import pytest
import uvicorn
from cryptography.fernet import Fernet
from helm_python import HelmRenderError, lint
from packaging.version import Version
from starlette.applications import Starlette
from uvicorn.middleware.proxy_headers import ProxyHeadersMiddleware

from controlplane.core.queue import LANE_GROUP, lane_stream
from controlplane.settings import Settings
from tests.helm.conftest import (
    CHART_DIR,
    MINIMAL,
    NAMESPACE,
    PRODUCTION,
    Manifest,
    Rendered,
    merged,
)
from workers.worker import SHUTDOWN_GRACE_SECONDS

FULLNAME = "brik-brik-cloud"
API = f"{FULLNAME}-api"
WORKER = f"{FULLNAME}-worker"
# Custom resources of operators (Prometheus Operator, KEDA): no schema in kubernetes-validate.
CUSTOM_KINDS = {
    "ServiceMonitor": "monitoring.coreos.com/v1",
    "PrometheusRule": "monitoring.coreos.com/v1",
    "ScaledObject": "keda.sh/v1alpha1",
    "TriggerAuthentication": "keda.sh/v1alpha1",
}
# Every optional part switched on, for the checks that must see them all.
EVERYTHING: dict[str, Any] = merged(
    PRODUCTION,
    {"metrics": {"grafanaDashboard": {"enabled": True}}},
)
SECRET_VALUES = {
    "secretKey": "sentinel-secret-key-0123456789abcdefghij",
    "previousSecretKeys": ["sentinel-previous-secret-key-0123456789"],
    "encryptionKeys": [Fernet.generate_key().decode(), Fernet.generate_key().decode()],
    "oidcClientSecret": "sentinel-oidc-client-secret",
    "smtpUrl": "smtp+starttls://mailer:sentinel-smtp-password@smtp.internal:587",
    "stripeSecretKey": "sk_live_sentinel-stripe-key",
    "stripeWebhookSecret": "whsec_sentinel-webhook-secret",
}
SECRET_VALUES_ONLY: dict[str, Any] = {"secrets": SECRET_VALUES}
WITH_SECRETS: dict[str, Any] = merged(MINIMAL, SECRET_VALUES_ONLY)


def newest_kubernetes_versions(count: int = 3) -> list[str]:
    """The newest minor versions kubernetes-validate has schemas for."""
    versions = sorted(
        {
            Version(version).base_version.rsplit(".", 1)[0]
            for version in kubernetes_validate.utils.all_versions()
        },
        key=Version,
    )
    return versions[-count:]


VALUE_SETS = {
    "minimal": MINIMAL,
    "production": PRODUCTION,
    "everything": EVERYTHING,
    "with-secrets": WITH_SECRETS,
}


@pytest.fixture(scope="module", params=list(VALUE_SETS))
def each(request: pytest.FixtureRequest, render: Callable[..., Rendered]) -> Rendered:
    return render(VALUE_SETS[request.param])


def containers(spec: Manifest) -> Iterator[Manifest]:
    yield from spec.get("initContainers", [])
    yield from spec["containers"]


# --- Helm and Kubernetes accept it ----------------------------------------------------------------


@pytest.mark.parametrize("values", ["minimal", "production"])
def test_the_chart_lints_clean_in_strict_mode(values: str) -> None:
    report = lint(CHART_DIR, VALUE_SETS[values], strict=True, namespace=NAMESPACE)
    problems = [message for message in report["messages"] if message["severity"] >= 2]
    assert report["errors"] == []
    assert problems == []


@pytest.mark.parametrize("values", ["minimal", "everything"])
def test_every_manifest_is_valid_for_the_three_newest_kubernetes_versions(
    values: str, render: Callable[..., Rendered]
) -> None:
    versions = newest_kubernetes_versions()
    assert len(versions) == 3
    for manifest in render(VALUE_SETS[values]).objects:
        if manifest["kind"] in CUSTOM_KINDS:
            # Checked for what can be checked without the operator's schema.
            assert manifest["apiVersion"] == CUSTOM_KINDS[manifest["kind"]]
            assert manifest["metadata"]["name"]
            assert manifest["spec"]
            continue
        for version in versions:
            kubernetes_validate.validate(manifest, version, strict=True)


# --- migrations before the new pods ---------------------------------------------------------------


def hook(manifest: Manifest) -> dict[str, Any]:
    annotations = manifest["metadata"].get("annotations") or {}
    return {
        "events": set(annotations.get("helm.sh/hook", "").split(",")) - {""},
        "weight": int(annotations.get("helm.sh/hook-weight", "0")),
        "delete": set(annotations.get("helm.sh/hook-delete-policy", "").split(",")) - {""},
    }


def test_migrations_run_as_a_pre_install_and_pre_upgrade_hook_before_any_pod(
    render: Callable[..., Rendered],
) -> None:
    for rendered in (render(MINIMAL), render(PRODUCTION)):
        job = rendered.get("Job", f"{FULLNAME}-migrations")
        assert job["spec"]["template"]["spec"]["containers"][0]["args"] == ["migrate"]
        migrate = hook(job)
        assert migrate["events"] == {"pre-install", "pre-upgrade"}
        # A new Job each time; a failed one stays for its log.
        assert migrate["delete"] == {"before-hook-creation", "hook-succeeded"}
        # Deployments are ordinary release objects: Helm applies them only after the
        # pre-install/pre-upgrade hooks have succeeded, so no new pod starts on an old schema.
        for deployment in rendered.of_kind("Deployment"):
            assert not hook(deployment)["events"]
        # Whatever the Job reads must exist before it: a hook of a lower weight, or a Secret of
        # the operator's (outside the release).
        release_objects = {
            (obj["kind"], obj["metadata"]["name"])
            for obj in rendered.objects
            if not hook(obj)["events"]
        }
        for name in secret_names_used(job["spec"]["template"]["spec"]):
            if ("Secret", name) in release_objects:
                pytest.fail(f"the migrations Job reads Secret {name}, created only after it")
            if name in rendered.names("Secret"):
                before = hook(rendered.get("Secret", name))
                assert before["events"] >= migrate["events"]
                assert before["weight"] < migrate["weight"]


def test_an_upgrade_migrates_the_database_url_it_brings(render: Callable[..., Rendered]) -> None:
    moved = merged(
        MINIMAL, SECRET_VALUES_ONLY, {"database": {"url": "postgres://b:c@new-db:5432/brik"}}
    )
    rendered = render(moved, upgrade=True)
    job = rendered.get("Job", f"{FULLNAME}-migrations")
    (env,) = [
        e
        for e in job["spec"]["template"]["spec"]["containers"][0]["env"]
        if e["name"] == "BRIK_DATABASE_URL"
    ]
    source = env["valueFrom"]["secretKeyRef"]
    assert rendered.secret_data(source["name"])[source["key"]] == "postgres://b:c@new-db:5432/brik"


def test_bootstrap_runs_after_install_and_upgrade_and_may_fill_only_its_secret(
    render: Callable[..., Rendered],
) -> None:
    rendered = render(PRODUCTION)
    job = rendered.get("Job", f"{FULLNAME}-bootstrap")
    assert hook(job)["events"] == {"post-install", "post-upgrade"}
    (role,) = rendered.of_kind("Role")
    assert role["rules"] == [
        {
            "apiGroups": [""],
            "resources": ["secrets"],
            "resourceNames": [f"{FULLNAME}-bootstrap"],
            "verbs": ["get", "patch"],
        }
    ]
    target = rendered.get("Secret", f"{FULLNAME}-bootstrap")
    assert "data" not in target
    assert "stringData" not in target
    assert target["metadata"]["annotations"]["helm.sh/resource-policy"] == "keep"
    spec = job["spec"]["template"]["spec"]
    assert spec["serviceAccountName"] == f"{FULLNAME}-bootstrap"
    binding = rendered.get("RoleBinding", f"{FULLNAME}-bootstrap")
    assert binding["subjects"][0]["name"] == spec["serviceAccountName"]
    # The API and workers never hold a Kubernetes token.
    for owner, pod in rendered.pod_specs():
        if owner != f"Job/{FULLNAME}-bootstrap":
            assert pod["automountServiceAccountToken"] is False, owner


# --- secrets --------------------------------------------------------------------------------------


def secret_names_used(spec: Manifest) -> set[str]:
    names = set()
    for container in containers(spec):
        names |= {e["secretRef"]["name"] for e in container.get("envFrom", []) if "secretRef" in e}
        names |= {
            e["valueFrom"]["secretKeyRef"]["name"]
            for e in container.get("env", [])
            if "secretKeyRef" in e.get("valueFrom", {})
        }
    return names


def sentinels(rendered: Rendered) -> list[str]:
    """Every secret value of :data:`WITH_SECRETS`, the URLs' passwords and the generated keys."""
    lists = ("encryptionKeys", "previousSecretKeys")
    values = [SECRET_VALUES[name] for name in SECRET_VALUES if name not in lists]
    values += [key for name in lists for key in SECRET_VALUES[name]]
    values += ["db-password-1", "redis-password-1", "sentinel-smtp-password"]
    for secret in rendered.of_kind("Secret"):
        for value in (secret.get("data") or {}).values():
            values.append(base64.b64decode(value).decode())
    return values


@pytest.mark.parametrize("values", ["with-secrets", "minimal"])
def test_no_secret_value_outside_a_secret(values: str, render: Callable[..., Rendered]) -> None:
    rendered = render(VALUE_SETS[values])
    secrets = sentinels(rendered)
    assert len(secrets) >= 4
    for manifest in rendered.objects:
        if manifest["kind"] == "Secret":
            continue
        text = repr(manifest)
        for secret in secrets:
            assert secret not in text, f"{manifest['kind']}/{manifest['metadata']['name']}"
    for secret in secrets:
        assert secret not in rendered.notes, "NOTES.txt shows a secret"


def test_secret_settings_reach_the_pods_only_through_secrets(each: Rendered) -> None:
    secret_settings = {"BRIK_SECRET_KEY", "BRIK_PREVIOUS_SECRET_KEYS", "BRIK_ENCRYPTION_KEYS",
                       "BRIK_DATABASE_URL",
                       "BRIK_REDIS_URL", "BRIK_OIDC_CLIENT_SECRET", "BRIK_SMTP_URL",
                       "BRIK_STRIPE_SECRET_KEY", "BRIK_STRIPE_WEBHOOK_SECRET",
                       "BRIK_BOOTSTRAP_ADMIN_PASSWORD"}  # fmt: skip
    for owner, spec in each.pod_specs():
        for container in containers(spec):
            for env in container.get("env", []):
                if env["name"] in secret_settings:
                    assert "secretKeyRef" in env.get("valueFrom", {}), (owner, env["name"])
                    assert "value" not in env
            for source in container.get("envFrom", []):
                assert set(source) <= {"secretRef", "configMapRef", "prefix"}
    for config_map in each.of_kind("ConfigMap"):
        assert not set(config_map.get("data", {})) & secret_settings


def test_generated_keys_are_usable_and_kept(render: Callable[..., Rendered]) -> None:
    rendered = render(MINIMAL)
    secret = rendered.get("Secret", FULLNAME)
    assert secret["metadata"]["annotations"]["helm.sh/resource-policy"] == "keep"
    data = rendered.secret_data(FULLNAME)
    settings = Settings(
        secret_key=data["BRIK_SECRET_KEY"], encryption_keys=data["BRIK_ENCRYPTION_KEYS"]
    )  # type: ignore[arg-type]
    settings.require_secret_key()
    Fernet(settings.encryption_keys[0].get_secret_value())
    assert data["BRIK_DATABASE_URL"] == MINIMAL["database"]["url"]
    assert "generated into Secret" in rendered.notes


def test_given_keys_are_not_kept_on_uninstall(render: Callable[..., Rendered]) -> None:
    secret = render(WITH_SECRETS).get("Secret", FULLNAME)
    assert "helm.sh/resource-policy" not in (secret["metadata"].get("annotations") or {})


def test_an_upgrade_that_cannot_read_the_generated_keys_refuses_to_make_new_ones(
    render: Callable[..., Rendered],
) -> None:
    # helm template / a client-side dry run of an upgrade: no lookup, so generating would
    # replace the keys in use (and make every stored credential unreadable).
    with pytest.raises(HelmRenderError, match=r"secrets\.existingSecret"):
        render(MINIMAL, upgrade=True)
    render(WITH_SECRETS, upgrade=True)


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"redis": MINIMAL["redis"]}, "database.url"),
        ({"database": MINIMAL["database"]}, "redis.url"),
        (merged(MINIMAL, {"secrets": {"existingSecret": "mine"}}), "nowhere to go"),
        (merged(MINIMAL, {"worker": {"autoscaling": {"keda": {"enabled": True}}}}), "redisAddress"),
    ],
)
def test_what_no_pod_could_run_without_fails_the_install(
    values: dict[str, Any], message: str, render: Callable[..., Rendered]
) -> None:
    with pytest.raises(HelmRenderError, match=message):
        render(values)


# --- pods -----------------------------------------------------------------------------------------


def test_every_pod_runs_unprivileged_on_a_read_only_root(each: Rendered) -> None:
    pods = each.pod_specs()
    assert len(pods) >= 3
    for owner, spec in pods:
        pod = spec["securityContext"]
        assert pod["runAsNonRoot"] is True, owner
        assert pod["runAsUser"] == 10001, owner
        assert pod["seccompProfile"] == {"type": "RuntimeDefault"}, owner
        assert spec["enableServiceLinks"] is False, owner
        tmp_volumes = {v["name"] for v in spec.get("volumes", []) if "emptyDir" in v}
        for container in containers(spec):
            context = container["securityContext"]
            assert context["readOnlyRootFilesystem"] is True, owner
            assert context["allowPrivilegeEscalation"] is False, owner
            assert context["capabilities"] == {"drop": ["ALL"]}, owner
            if owner.startswith(("Deployment", "Job")):
                mounts = {m["mountPath"]: m["name"] for m in container["volumeMounts"]}
                assert mounts.get("/tmp") in tmp_volumes, owner
            assert "memory" in container["resources"]["limits"], owner


def test_probes_point_where_the_processes_answer(render: Callable[..., Rendered]) -> None:
    rendered = render(MINIMAL)
    (api,) = rendered.get("Deployment", API)["spec"]["template"]["spec"]["containers"]
    assert api["args"][:1] == ["serve"]
    assert {p["name"]: p["containerPort"] for p in api["ports"]} == {"http": 8000}
    # Start-up waits for PostgreSQL and Redis; afterwards only the process itself decides, so
    # a Redis outage never empties the Service (the API keeps accepting pushes meanwhile).
    assert api["startupProbe"]["httpGet"] == {"path": "/readyz", "port": "http"}
    assert api["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "http"}
    assert api["readinessProbe"]["httpGet"] == {"path": "/healthz", "port": "http"}

    (worker,) = rendered.get("Deployment", WORKER)["spec"]["template"]["spec"]["containers"]
    assert worker["args"] == ["worker"]
    (port,) = worker["ports"]
    env = {e["name"]: e.get("value") for e in worker["env"]}
    assert env["BRIK_WORKER_METRICS_PORT"] == str(port["containerPort"])
    assert worker["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "metrics"}
    assert worker["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "metrics"}


def test_stopping_pods_get_the_time_their_work_needs(render: Callable[..., Rendered]) -> None:
    rendered = render(MINIMAL)
    worker = rendered.get("Deployment", WORKER)["spec"]["template"]["spec"]
    # On SIGTERM a worker waits up to SHUTDOWN_GRACE_SECONDS for started sends to be recorded.
    assert worker["terminationGracePeriodSeconds"] >= SHUTDOWN_GRACE_SECONDS + 15
    api = rendered.get("Deployment", API)["spec"]["template"]["spec"]
    pause = api["containers"][0]["lifecycle"]["preStop"]["sleep"]["seconds"]
    assert pause >= 5
    assert api["terminationGracePeriodSeconds"] >= pause + 30
    for name in (API, WORKER):
        strategy = rendered.get("Deployment", name)["spec"]["strategy"]["rollingUpdate"]
        assert strategy["maxUnavailable"] == 0


def test_disruption_budgets_and_spreading_select_their_own_pods(each: Rendered) -> None:
    budgets = {pdb["metadata"]["name"]: pdb for pdb in each.of_kind("PodDisruptionBudget")}
    assert set(budgets) == {API, WORKER}
    for name, budget in budgets.items():
        template = each.get("Deployment", name)["spec"]["template"]
        labels = template["metadata"]["labels"]
        selector = budget["spec"]["selector"]["matchLabels"]
        assert selector.items() <= labels.items()
        other = API if name == WORKER else WORKER
        other_labels = each.get("Deployment", other)["spec"]["template"]["metadata"]["labels"]
        assert not selector.items() <= other_labels.items()
        assert budget["spec"]["unhealthyPodEvictionPolicy"] == "AlwaysAllow"
        for constraint in template["spec"].get("topologySpreadConstraints", []):
            assert constraint["labelSelector"]["matchLabels"] == selector
        assert template["spec"]["affinity"]["podAntiAffinity"]


# --- rolling on change ----------------------------------------------------------------------------


def pod_annotations(rendered: Rendered) -> dict[str, dict[str, str]]:
    return {
        name: rendered.get("Deployment", name)["spec"]["template"]["metadata"]["annotations"]
        for name in (API, WORKER)
    }


def test_pods_roll_when_a_secret_or_a_setting_changes_and_only_then(
    render: Callable[..., Rendered],
) -> None:
    before = pod_annotations(render(WITH_SECRETS))
    assert pod_annotations(render(WITH_SECRETS)) == before
    rotated = pod_annotations(
        render(WITH_SECRETS, {"secrets": {"stripeWebhookSecret": "whsec_new"}})
    )
    reconfigured = pod_annotations(render(WITH_SECRETS, {"config": {"workerMaxJobs": 50}}))
    for name in (API, WORKER):
        assert rotated[name]["checksum/secret"] != before[name]["checksum/secret"]
        assert rotated[name]["checksum/config"] == before[name]["checksum/config"]
        assert reconfigured[name]["checksum/config"] != before[name]["checksum/config"]
        assert reconfigured[name]["checksum/secret"] == before[name]["checksum/secret"]


def test_each_step_of_a_secret_key_rotation_reaches_the_pods(
    render: Callable[..., Rendered],
) -> None:
    """docs/operations.md, "The secret key, with zero downtime": add, promote, drop — each an
    upgrade whose Secret the processes read as the ring they should hold, rolling the pods."""
    old, new = "o" * 40, "n" * 40
    steps = {
        "before": {"secretKey": old, "previousSecretKeys": []},
        "add": {"secretKey": old, "previousSecretKeys": [new]},
        "promote": {"secretKey": new, "previousSecretKeys": [old]},
        "drop": {"secretKey": new, "previousSecretKeys": []},
    }
    rings, checksums = {}, set()
    for step, keys in steps.items():
        rendered = render(WITH_SECRETS, {"secrets": keys}, upgrade=True)
        data = rendered.secret_data(FULLNAME)
        assert ("BRIK_PREVIOUS_SECRET_KEYS" in data) is bool(keys["previousSecretKeys"])
        settings = Settings(
            secret_key=data["BRIK_SECRET_KEY"],
            previous_secret_keys=data.get("BRIK_PREVIOUS_SECRET_KEYS", ""),
        )  # type: ignore[arg-type]
        rings[step] = settings.require_secret_keys()
        checksums.add(pod_annotations(rendered)[API]["checksum/secret"])
    assert rings == {"before": [old], "add": [old, new], "promote": [new, old], "drop": [new]}
    assert len(checksums) == len(steps)


def test_autoscaled_deployments_leave_their_replicas_to_the_autoscaler(
    render: Callable[..., Rendered],
) -> None:
    fixed = render(MINIMAL)
    assert fixed.get("Deployment", API)["spec"]["replicas"] == 2
    assert fixed.get("Deployment", WORKER)["spec"]["replicas"] == 2
    assert not fixed.of_kind("HorizontalPodAutoscaler")
    assert not fixed.of_kind("ScaledObject")

    scaled = render(PRODUCTION)
    for name in (API, WORKER):
        assert "replicas" not in scaled.get("Deployment", name)["spec"]
    (api_hpa,) = scaled.of_kind("HorizontalPodAutoscaler")
    assert api_hpa["spec"]["scaleTargetRef"]["name"] == API
    assert api_hpa["spec"]["metrics"][0]["resource"]["name"] == "cpu"
    (scaled_object,) = scaled.of_kind("ScaledObject")
    assert scaled_object["spec"]["scaleTargetRef"]["name"] == WORKER
    queue, lane = scaled_object["spec"]["triggers"]
    assert queue["type"] == "redis"
    assert queue["metadata"]["listName"] == Settings.model_fields["queue_name"].default
    # Small pushes due now wait in the lane, not the queue: a backlog there scales too.
    assert lane["type"] == "redis-streams"
    assert lane["metadata"]["stream"] == lane_stream(Settings.model_fields["queue_name"].default)
    assert lane["metadata"]["consumerGroup"] == LANE_GROUP
    assert lane["metadata"]["address"] == queue["metadata"]["address"]

    adapter = render(MINIMAL, {"worker": {"autoscaling": {"hpa": {"enabled": True}}}})
    (worker_hpa,) = adapter.of_kind("HorizontalPodAutoscaler")
    assert worker_hpa["spec"]["metrics"][0]["external"]["metric"]["name"] == "brik_queue_depth"
    assert "replicas" not in adapter.get("Deployment", WORKER)["spec"]


# --- settings -------------------------------------------------------------------------------------


def test_the_config_map_holds_settings_the_application_reads(
    render: Callable[..., Rendered],
) -> None:
    rendered = render(PRODUCTION)
    data = rendered.get("ConfigMap", f"{FULLNAME}-config")["data"]
    environment = {name: value for name, value in data.items()}
    fields = {f"BRIK_{name.upper()}" for name in Settings.model_fields}
    assert set(environment) <= fields
    # pydantic-settings parses them exactly as a pod's environment would be.
    parsed = Settings.model_validate(
        {name.removeprefix("BRIK_").lower(): value for name, value in environment.items()}
    )
    assert parsed.stripe_pro_price_ids == ["price_monthly", "price_yearly"]
    assert parsed.reconcile_every_seconds == 30
    assert parsed.oidc_allow_signup is False


def test_large_numbers_reach_the_application_as_written(render: Callable[..., Rendered]) -> None:
    """Helm reads a values file's numbers as floats: a million must not become "1e+06", which
    no integer setting parses (the pods would stop at start-up on a value the schema took)."""
    given = {
        "maxBodyBytes": 2_097_152,
        "planProStateBytes": 50_000_000_000,
        "planProPushesPerMonth": 5_000_000,
        "analyticsBufferMaxBytes": 1_073_741_824,
        "billingPastDueGraceSeconds": 1_209_600,
        "workerPollDelay": 0.05,
        "fcmInFlight": 800,
    }
    data = render(MINIMAL, {"config": given}).get("ConfigMap", f"{FULLNAME}-config")["data"]
    parsed = Settings.model_validate(
        {name.removeprefix("BRIK_").lower(): value for name, value in data.items()}
    )
    for key, value in given.items():
        field = "".join(f"_{c.lower()}" if c.isupper() else c for c in key)
        assert getattr(parsed, field) == value, (key, data[f"BRIK_{field.upper()}"])


def test_the_api_believes_forwarded_addresses_only_from_the_proxies_named(
    render: Callable[..., Rendered], monkeypatch: pytest.MonkeyPatch
) -> None:
    def api_env(rendered: Rendered) -> dict[str, Any]:
        (container,) = rendered.get("Deployment", API)["spec"]["template"]["spec"]["containers"]
        return {env["name"]: env.get("value") for env in container.get("env", [])}

    assert "FORWARDED_ALLOW_IPS" not in api_env(render(MINIMAL))  # uvicorn's 127.0.0.1
    rendered = render(MINIMAL, {"api": {"forwardedAllowIps": "10.0.0.0/8"}})
    value = api_env(rendered)["FORWARDED_ALLOW_IPS"]
    (worker,) = rendered.get("Deployment", WORKER)["spec"]["template"]["spec"]["containers"]
    assert "FORWARDED_ALLOW_IPS" not in {env["name"] for env in worker["env"]}
    # The variable `serve`'s uvicorn reads, behind an Ingress: the controller's X-Forwarded-For
    # names the client.
    monkeypatch.setenv("FORWARDED_ALLOW_IPS", value)
    config = uvicorn.Config(Starlette(), proxy_headers=True)
    config.load()
    assert isinstance(config.loaded_app, ProxyHeadersMiddleware)
    assert "10.1.2.3" in config.loaded_app.trusted_hosts
    assert "192.0.2.1" not in config.loaded_app.trusted_hosts


def test_the_public_base_url_follows_the_ingress(render: Callable[..., Rendered]) -> None:
    ingress = {
        "ingress": {
            "enabled": True,
            "hosts": [{"host": "push.example.org", "paths": [{"path": "/"}]}],
            "tls": [{"secretName": "tls", "hosts": ["push.example.org"]}],
        }
    }
    rendered = render(MINIMAL, ingress)
    data = rendered.get("ConfigMap", f"{FULLNAME}-config")["data"]
    assert data["BRIK_PUBLIC_BASE_URL"] == "https://push.example.org"
    (rule,) = rendered.get("Ingress", FULLNAME)["spec"]["rules"]
    backend = rule["http"]["paths"][0]["backend"]["service"]
    service = rendered.get("Service", backend["name"])
    assert backend["port"]["name"] in {port["name"] for port in service["spec"]["ports"]}
    assert "https://push.example.org" in rendered.notes
    explicit = render(MINIMAL, ingress, {"config": {"publicBaseUrl": "https://api.example.org"}})
    assert explicit.get("ConfigMap", f"{FULLNAME}-config")["data"]["BRIK_PUBLIC_BASE_URL"] == (
        "https://api.example.org"
    )


# --- traffic and monitoring -----------------------------------------------------------------------


def test_services_and_service_monitors_find_the_pods(render: Callable[..., Rendered]) -> None:
    rendered = render(PRODUCTION)
    for service in rendered.of_kind("Service"):
        selector = service["spec"]["selector"]
        matching = [
            d for d in rendered.of_kind("Deployment")
            if selector.items() <= d["spec"]["template"]["metadata"]["labels"].items()
        ]  # fmt: skip
        (deployment,) = matching
        ports = {
            port["name"]
            for container in deployment["spec"]["template"]["spec"]["containers"]
            for port in container.get("ports", [])
        }
        assert {port["targetPort"] for port in service["spec"]["ports"]} <= ports
    monitors = rendered.of_kind("ServiceMonitor")
    assert len(monitors) == 2
    for monitor in monitors:
        selector = monitor["spec"]["selector"]["matchLabels"]
        (service,) = [
            s
            for s in rendered.of_kind("Service")
            if selector.items() <= s["metadata"]["labels"].items()
        ]
        (endpoint,) = monitor["spec"]["endpoints"]
        assert endpoint["port"] in {port["name"] for port in service["spec"]["ports"]}
        assert endpoint["path"] == "/metrics"


def test_network_policies_open_the_ports_the_pods_serve(render: Callable[..., Rendered]) -> None:
    for values in (MINIMAL, PRODUCTION):
        rendered = render(values)
        for name, port in ((API, "http"), (WORKER, "metrics")):
            policy = rendered.get("NetworkPolicy", name)
            template = rendered.get("Deployment", name)["spec"]["template"]
            assert policy["spec"]["podSelector"]["matchLabels"].items() <= (
                template["metadata"]["labels"].items()
            )
            opened = {p["port"] for rule in policy["spec"]["ingress"] for p in rule["ports"]}
            assert port in opened
    locked = render(PRODUCTION).get("NetworkPolicy", API)["spec"]
    sources = locked["ingress"][0]["from"]
    assert {"podSelector": {"matchLabels": {f"{FULLNAME}-client": "true"}}} in sources
    test_pod = render(PRODUCTION).get("Pod", f"{FULLNAME}-test-pipeline")
    assert test_pod["metadata"]["labels"][f"{FULLNAME}-client"] == "true"


def test_a_redis_url_can_be_composed_from_an_operators_password_secret(
    render: Callable[..., Rendered],
) -> None:
    # The README's recipe for a Redis whose Secret holds only a password.
    extra_env = [
        {
            "name": "REDIS_PASSWORD",
            "valueFrom": {"secretKeyRef": {"name": "brik-redis", "key": "redis-password"}},
        },
        {"name": "BRIK_REDIS_URL", "value": "redis://:$(REDIS_PASSWORD)@redis.data.svc:6379/0"},
    ]
    values = {
        "database": MINIMAL["database"],
        "api": {"extraEnv": extra_env},
        "worker": {"extraEnv": extra_env},
    }
    rendered = render(values)
    for name in (API, WORKER):
        (container,) = rendered.get("Deployment", name)["spec"]["template"]["spec"]["containers"]
        names = [env["name"] for env in container["env"]]
        # Kubernetes expands $(VAR) only from variables defined before it.
        assert names.index("REDIS_PASSWORD") < names.index("BRIK_REDIS_URL")
    assert "BRIK_REDIS_URL" not in rendered.secret_data(FULLNAME)


def test_export_archives_live_on_one_claim_that_api_and_worker_pods_mount(
    render: Callable[..., Rendered],
) -> None:
    rendered = render(merged(MINIMAL, {"exports": {"existingClaim": "brik-exports"}}))
    config = rendered.get("ConfigMap", f"{FULLNAME}-config")["data"]
    assert config["BRIK_EXPORT_DIR"] == "/var/lib/brik/exports"
    for name in (API, WORKER):
        pod = rendered.get("Deployment", name)["spec"]["template"]["spec"]
        volumes = {volume["name"]: volume for volume in pod["volumes"]}
        assert volumes["exports"]["persistentVolumeClaim"] == {"claimName": "brik-exports"}
        (container,) = pod["containers"]
        mounts = {mount["name"]: mount["mountPath"] for mount in container["volumeMounts"]}
        assert mounts["exports"] == "/var/lib/brik/exports"
    # Without a claim each pod writes into an emptyDir (the root filesystem is read-only).
    alone = render(MINIMAL).get("Deployment", WORKER)["spec"]["template"]["spec"]
    assert "emptyDir" in {v["name"]: v for v in alone["volumes"]}["exports"]
