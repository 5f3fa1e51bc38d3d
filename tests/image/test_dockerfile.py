"""The Dockerfile and .dockerignore, read as Docker reads them (no container runtime needed).

What a broken image would show only at `docker build` or in production is checked here: every
file the build copies is in the build context, stages exist, the final stage runs as a non-root
user without compilers, the entrypoint is a real command, and the build installs from the lock
file alone.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import tomllib
from pathlib import Path

import click
import pytest

from controlplane.cli import main as cli
from tests.support.dockerfile import (
    Dockerfile,
    DockerfileError,
    DockerIgnore,
    environment,
    parse,
)

ROOT = Path(__file__).resolve().parents[2]
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())
# Packages that put a compiler or a build chain into an image.
BUILD_TOOLS = re.compile(
    r"\b(gcc|g\+\+|clang|cc|make|build-essential|python3?-dev|libc6?-dev|musl-dev|cargo|rustc)\b"
)


@pytest.fixture(scope="module")
def dockerfile() -> Dockerfile:
    return parse((ROOT / "Dockerfile").read_text())


@pytest.fixture(scope="module")
def ignore() -> DockerIgnore:
    return DockerIgnore.of(ROOT)


def test_it_builds_a_builder_and_a_final_stage_on_slim_python_3_11(
    dockerfile: Dockerfile,
) -> None:
    assert [stage.name for stage in dockerfile.stages] == ["builder", None]
    for stage in dockerfile.stages:
        assert stage.base == "docker.io/library/python:3.11-slim-bookworm"
    assert PYPROJECT["project"]["requires-python"] == ">=3.11"


def test_every_copy_source_is_in_the_build_context(
    dockerfile: Dockerfile, ignore: DockerIgnore
) -> None:
    tracked = _tracked_files()
    copied: set[str] = set()
    for stage in dockerfile.stages:
        for instruction in stage.all("COPY") + stage.all("ADD"):
            if "from" in instruction.flags:
                continue
            for source in instruction.words()[:-1]:
                relative = source.strip("/")
                assert (ROOT / relative).exists(), f"line {instruction.line}: no {source}"
                assert not ignore.excludes(relative), f".dockerignore drops {source}"
                below = [path for path in tracked if path == relative or
                         path.startswith(relative + "/")]  # fmt: skip
                assert below, f"line {instruction.line}: {source} holds no tracked file"
                # Every template, migration and module under a copied folder reaches the image.
                dropped = [path for path in below if ignore.excludes(path)]
                assert not dropped, f".dockerignore drops {dropped[:5]} from the image"
                copied.update(below)
    # The wheel's package data lives under the copied folders.
    assert "controlplane/dashboard/templates/base.html" in copied
    assert any(path.startswith("controlplane/migrations/") for path in copied)


def test_the_build_context_leaves_out_secrets_and_local_state(ignore: DockerIgnore) -> None:
    for path in [
        ".env", "helm/compose/.env", ".git/config", ".brik/secrets.json", ".venv/bin/python",
        "tests/conftest.py", "controlplane/__pycache__/cli.cpython-311.pyc", "build/lib/x.py",
        "brik_cloud.egg-info/PKG-INFO", "loadtests/results/run.json",
    ]:  # fmt: skip
        assert ignore.excludes(path), path


def test_every_stage_a_step_names_exists_and_comes_before_it(dockerfile: Dockerfile) -> None:
    for stage in dockerfile.stages:
        for instruction in stage.all("COPY"):
            if "from" in instruction.flags:
                source = dockerfile.stage(instruction.flags["from"])
                assert source is not None, f"line {instruction.line}: no such stage"
                assert source.index < stage.index


def test_the_final_stage_runs_as_a_non_root_user_without_build_tools(
    dockerfile: Dockerfile,
) -> None:
    final = dockerfile.final
    user = final.last("USER")
    assert user is not None
    uid, _, gid = user.arguments.partition(":")
    # Numeric, so Kubernetes' runAsNonRoot can verify it without the image's passwd file.
    assert uid == "10001"
    assert gid == "10001"
    for instruction in final.all("RUN"):
        assert not BUILD_TOOLS.search(instruction.arguments), instruction.arguments
        assert not re.search(r"\b(apt-get|apt|apk|pip)\b", instruction.arguments)
    # Only the virtualenv comes from the builder: its pip cache, sources and wheels stay there.
    copies = [item.words() for item in final.all("COPY")]
    assert copies == [["/opt/brik-cloud", "/opt/brik-cloud"]]
    assert final.base != "builder"


def test_the_entrypoint_is_brik_cloud_and_serves_the_api_by_default(
    dockerfile: Dockerfile,
) -> None:
    final = dockerfile.final
    entrypoint, cmd = final.last("ENTRYPOINT"), final.last("CMD")
    assert entrypoint is not None
    assert cmd is not None
    # Exec form: brik-cloud is PID 1 and receives SIGTERM itself.
    assert entrypoint.exec_form == ["brik-cloud"]
    assert cmd.exec_form == ["serve"]
    assert PYPROJECT["project"]["scripts"]["brik-cloud"] == "controlplane.cli:main"
    assert isinstance(cli, click.Group)
    serve = cli.commands["serve"]
    defaults = {param.name: param.default for param in serve.params}
    assert defaults["host"] == "0.0.0.0"  # reachable from outside the container
    exposed = final.last("EXPOSE")
    assert exposed is not None
    assert exposed.words() == [str(defaults["port"])]
    for command in ("serve", "worker", "migrate", "bootstrap"):
        assert command in cli.commands


def test_the_runtime_environment(dockerfile: Dockerfile) -> None:
    variables = environment(dockerfile.final, dockerfile, {"PATH": "/usr/local/bin:/usr/bin"})
    assert variables["PYTHONDONTWRITEBYTECODE"] == "1"  # the root filesystem is read-only
    assert variables["PYTHONUNBUFFERED"] == "1"  # logs reach `docker logs` at once
    assert variables["PATH"] == "/opt/brik-cloud/bin:/usr/local/bin:/usr/bin"


def test_the_labels_describe_this_version(dockerfile: Dockerfile) -> None:
    final = dockerfile.final
    text = " ".join(item.arguments for item in final.all("LABEL"))
    labels = dict(re.findall(r'(org\.opencontainers\.image\.[a-z.]+)="([^"]*)"', text))
    args = dict(re.findall(r"^(\w+)=(.*)$", "\n".join(i.arguments for i in final.all("ARG")), re.M))
    assert labels["org.opencontainers.image.title"] == "Brik Cloud"
    assert labels["org.opencontainers.image.licenses"] == PYPROJECT["project"]["license"]["text"]
    assert labels["org.opencontainers.image.version"] == "$VERSION"
    assert args["VERSION"] == PYPROJECT["project"]["version"]
    for label in ("revision", "created", "base.name", "description"):
        assert f"org.opencontainers.image.{label}" in labels


def test_the_build_installs_the_lock_alone_then_brik_cloud_without_dependencies(
    dockerfile: Dockerfile,
) -> None:
    builder = dockerfile.stage("builder")
    assert builder is not None
    runs = " && ".join(item.arguments for item in builder.all("RUN"))
    commands = [part.strip() for part in runs.split("&&")]
    installs = [command for command in commands if command.startswith("pip install")]
    assert installs[0].split()[2:] == [
        "--require-hashes", "--only-binary=:all:", "--no-deps", "-r", "requirements.lock",
    ]  # fmt: skip
    # Brik Cloud's own wheel: its dependencies are the lock's, checked by `pip check` after.
    assert "--no-deps" in installs[1].split()
    assert commands[-1] == "pip check"
    # The wheel is built by the setuptools the lock pins, not one fetched at build time.
    wheel = next(command for command in commands if command.startswith("pip wheel"))
    assert "--no-build-isolation" in wheel.split()
    assert re.search(r"^setuptools==", (ROOT / "requirements.lock").read_text(), re.M)


# --- the reader itself ------------------------------------------------------------------------


def test_the_reader_follows_docker_on_continuations_comments_and_env() -> None:
    parsed = parse(
        "# syntax=docker/dockerfile:1\n"
        "ARG BASE=python:3.11\n"
        "FROM ${BASE} AS one\n"
        "ENV A=1 \\\n"
        "# a comment inside a continuation vanishes\n"
        '    B="two words"\n'
        "ENV A=2 C=$A\n"
        'CMD ["serve"]\n'
        "FROM one\n"
        "RUN echo [not json\n"
    )
    assert parsed.directives == {"syntax": "docker/dockerfile:1"}
    first = parsed.stages[0]
    assert first.base == "python:3.11"
    assert first.name == "one"
    # One ENV sees only what came before it: C is the old A.
    assert environment(first, parsed, {}) == {"A": "2", "B": "two words", "C": "1"}
    run = parsed.final.last("RUN")
    assert run is not None
    assert run.exec_form is None
    assert parsed.stage("one") is first


@pytest.mark.parametrize(
    "source",
    [
        "RUN echo hi\n",  # before any FROM
        "FROM x\nFETCH y\n",  # unknown instruction
        "FROM x\nRUN <<EOF\necho\nEOF\n",  # heredoc: not understood, so refused
        "FROM x\nRUN echo \\\n",  # ends inside a continuation
        "FROM x AS a\nFROM y AS a\n",  # two stages with one name
    ],
)
def test_the_reader_refuses_what_docker_would_or_it_cannot_read(source: str) -> None:
    with pytest.raises(DockerfileError):
        parse(source)


def test_dockerignore_matching_follows_docker() -> None:
    ignore = DockerIgnore("*\n!src/\n**/__pycache__\nsrc/secret.txt\n!src/secret.txt\n# c\n")
    assert ignore.excludes("README.md")
    assert not ignore.excludes("src/app.py")
    assert not ignore.excludes("src/deep/er/app.py")
    assert ignore.excludes("src/deep/__pycache__/app.pyc")  # a matching parent folder counts
    assert not ignore.excludes("src/secret.txt")  # the last matching pattern wins
    assert DockerIgnore("docs/*.md").excludes("docs/a.md")
    assert not DockerIgnore("docs/*.md").excludes("docs/sub/a.md")  # * stays in one segment
    assert DockerIgnore("/build").excludes("build/x")
    assert not DockerIgnore("").excludes("anything")


def _tracked_files() -> list[str]:
    git = shutil.which("git")
    if git is None or not (ROOT / ".git").exists():
        pytest.skip("needs the git checkout to know which files are the project's")
    listed = subprocess.run(
        [git, "ls-files", "-z"], cwd=ROOT, capture_output=True, check=True, timeout=60
    )
    return [path for path in listed.stdout.decode().split("\0") if path]
