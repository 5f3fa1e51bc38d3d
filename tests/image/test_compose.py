"""The docker compose file (helm/compose/compose.yaml) and its .env.example.

No container runtime here, so what a single-host install relies on is read from the file: it
runs the image this repository builds, each service's command is a real `brik-cloud` command,
the migrations finish before the API and the worker start, PostgreSQL and Redis report
healthy before anyone uses them, and not one secret is written in it.
"""

from __future__ import annotations

import re
import tomllib
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import click
import pytest
import yaml

from controlplane.cli import main as cli
from controlplane.settings import Settings
from tests.support.dockerfile import DockerIgnore, parse

ROOT = Path(__file__).resolve().parents[2]
COMPOSE_DIR = ROOT / "helm" / "compose"
COMPOSE = yaml.safe_load((COMPOSE_DIR / "compose.yaml").read_text())
SERVICES: dict[str, dict[str, Any]] = COMPOSE["services"]
VERSION = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]
# The services that run the Brik Cloud image, and the command each runs.
BRIK_SERVICES = {"migrate": "migrate", "api": "serve", "worker": "worker"}
INTERPOLATION = re.compile(r"\$\{([A-Z0-9_]+)(?::?[-?+][^}]*)?\}")
SECRET_NAME = re.compile(r"PASSWORD|SECRET|KEY|TOKEN|AUTH")


def example_variables() -> dict[str, str]:
    """The variables .env.example sets (commented-out ones excluded)."""
    text = (COMPOSE_DIR / ".env.example").read_text()
    return dict(re.findall(r"^([A-Z][A-Z0-9_]*)=(.*)$", text, flags=re.M))


def test_it_runs_postgres_redis_the_migrations_the_api_and_a_worker() -> None:
    assert COMPOSE["name"] == "brik-cloud"
    assert set(SERVICES) == {"postgres", "redis", *BRIK_SERVICES}


@pytest.mark.parametrize("name", BRIK_SERVICES)
def test_brik_services_run_the_image_this_repository_builds(name: str) -> None:
    service = SERVICES[name]
    assert service["image"] == f"${{BRIK_IMAGE:-brik-cloud:{VERSION}}}"
    context = (COMPOSE_DIR / service["build"]["context"]).resolve()
    assert context == ROOT
    assert (context / service["build"].get("dockerfile", "Dockerfile")).exists()
    # The image's own entrypoint (brik-cloud) runs; compose only chooses the command.
    assert "entrypoint" not in service


@pytest.mark.parametrize(("name", "command"), BRIK_SERVICES.items())
def test_each_service_runs_a_brik_cloud_command_that_exists(name: str, command: str) -> None:
    dockerfile = parse((ROOT / "Dockerfile").read_text())
    entrypoint = dockerfile.final.last("ENTRYPOINT")
    assert entrypoint is not None
    assert entrypoint.exec_form == ["brik-cloud"]
    args = SERVICES[name]["command"]
    assert args[0] == command
    assert isinstance(cli, click.Group)
    # click parses the arguments exactly as the container's brik-cloud would.
    cli.commands[command].make_context(command, list(args[1:]))


def test_the_migrations_finish_before_the_api_and_the_worker_start() -> None:
    migrate = SERVICES["migrate"]
    assert migrate["depends_on"]["postgres"]["condition"] == "service_healthy"
    assert migrate["restart"] == "no"  # one-shot: a failed migration must stay failed
    for name in ("api", "worker"):
        depends_on = SERVICES[name]["depends_on"]
        assert depends_on["migrate"]["condition"] == "service_completed_successfully"
        assert depends_on["postgres"]["condition"] == "service_healthy"
        assert depends_on["redis"]["condition"] == "service_healthy"


def test_postgres_and_redis_report_healthy_only_when_they_answer() -> None:
    assert SERVICES["postgres"]["healthcheck"]["test"][:2] == ["CMD", "pg_isready"]
    assert SERVICES["redis"]["healthcheck"]["test"] == ["CMD", "redis-cli", "ping"]
    # redis-cli authenticates with REDISCLI_AUTH: the password is on no command line there.
    redis_environment = SERVICES["redis"]["environment"]
    assert INTERPOLATION.fullmatch(redis_environment["REDISCLI_AUTH"])
    for name in ("postgres", "redis"):
        assert SERVICES[name]["volumes"], f"{name} keeps its data in a volume"


def test_the_api_and_worker_health_checks_probe_the_ports_they_serve() -> None:
    serve = cli.commands["serve"]
    port = next(param.default for param in serve.params if param.name == "port")
    api = SERVICES["api"]
    assert api["ports"] == [f"127.0.0.1:{port}:{port}"]  # behind the host's own proxy
    assert f"http://127.0.0.1:{port}/readyz" in " ".join(api["healthcheck"]["test"])
    worker = SERVICES["worker"]
    metrics_port = worker["environment"]["BRIK_WORKER_METRICS_PORT"]
    assert f"http://127.0.0.1:{metrics_port}/readyz" in " ".join(worker["healthcheck"]["test"])
    # The worker keeps the database and Redis settings the others have.
    assert worker["environment"]["BRIK_DATABASE_URL"] == api["environment"]["BRIK_DATABASE_URL"]
    assert worker["environment"]["BRIK_REDIS_URL"] == api["environment"]["BRIK_REDIS_URL"]


@pytest.mark.parametrize("name", BRIK_SERVICES)
def test_brik_services_run_as_the_chart_runs_them(name: str) -> None:
    service = SERVICES[name]
    assert service["read_only"] is True
    assert service["tmpfs"] == ["/tmp"]
    assert service["cap_drop"] == ["ALL"]
    assert "no-new-privileges:true" in service["security_opt"]
    assert "user" not in service  # the image's uid 10001


def _strings(node: object, path: str = "") -> Iterator[tuple[str, str]]:
    if isinstance(node, dict):
        for key, value in node.items():
            yield from _strings(value, f"{path}.{key}")
    elif isinstance(node, list):
        for index, value in enumerate(node):
            yield from _strings(value, f"{path}[{index}]")
    elif isinstance(node, str | int | float):
        yield path, str(node)


def test_no_secret_is_written_in_the_compose_file() -> None:
    for path, value in _strings(COMPOSE):
        key = path.rsplit(".", 1)[-1]
        if SECRET_NAME.search(key):
            assert INTERPOLATION.fullmatch(value), f"{path} must come from .env"
        masked = INTERPOLATION.sub("FROM-ENV", value)
        for url in re.findall(r"\b[a-z]+://\S+", masked):
            password = urlsplit(url).password
            assert password in (None, "FROM-ENV"), f"{path}: a password in {url}"
        for argument in re.findall(r"--requirepass\s+(\S+)", value):
            assert argument.strip("\"'").startswith("$$"), f"{path}: a literal password"
    # The settings that carry secrets are not set here at all: only in .env.
    for service in SERVICES.values():
        environment = service.get("environment", {})
        assert "BRIK_SECRET_KEY" not in environment
        assert "BRIK_ENCRYPTION_KEYS" not in environment


def test_every_variable_the_compose_file_needs_is_in_env_example() -> None:
    text = (COMPOSE_DIR / "compose.yaml").read_text()
    documented = example_variables()
    commented = set(
        re.findall(r"^# ([A-Z][A-Z0-9_]*)=", (COMPOSE_DIR / ".env.example").read_text(), re.M)
    )
    for match in INTERPOLATION.finditer(text):
        name, operator = match.group(1), match.group(0)[len(match.group(1)) + 2 :]
        if operator.startswith(":?"):
            assert name in documented, f"{name} is required but not in .env.example"
        else:
            assert name in documented or name in commented, name


def test_env_example_holds_settings_and_no_secret_values() -> None:
    settings = {f"BRIK_{name.upper()}" for name in Settings.model_fields}
    for name, value in example_variables().items():
        if name.startswith("BRIK_"):
            assert name in settings, f"{name} is not a setting"
        if SECRET_NAME.search(name):
            assert value == "", f"{name}: an example secret would end up in production"
    assert {"BRIK_SECRET_KEY", "BRIK_ENCRYPTION_KEYS"} <= example_variables().keys()


def test_the_filled_in_env_file_stays_out_of_git_and_the_image() -> None:
    assert ".env" in (ROOT / ".gitignore").read_text().splitlines()
    assert DockerIgnore.of(ROOT).excludes("helm/compose/.env")
