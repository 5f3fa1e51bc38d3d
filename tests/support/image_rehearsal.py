"""The Dockerfile's build played on this machine, without a container runtime.

No Docker daemon is needed (nor guaranteed here), so the image's tests build what the image
holds the way the Dockerfile says, step by step: every stage before the last one runs as
written — its ``COPY`` takes the files ``.dockerignore`` lets through, its ``RUN`` lines run in
``/bin/sh`` in its ``WORKDIR`` with its ``ENV`` and ``ARG`` values — inside a folder that plays
the image's root: a container path ``/opt/x`` is ``<root>/opt/x`` here, for ``WORKDIR``,
``COPY`` destinations and ``ENV`` values that are absolute paths. The base image is this
machine's Python (a ``python`` on ``PATH`` pointing at it), which must be the base image's
minor version.

What differs from ``docker build``, on purpose and no more:

- pip keeps its cache (``PIP_NO_CACHE_DIR`` is dropped) and uses this machine's configured
  index: the lock's hashes decide which files are accepted, so a cached or mirrored wheel is
  the same file;
- the last stage's ``RUN`` lines are not run (they change the OS image — creating its user —
  which no folder can); they are listed in :attr:`Rehearsal.skipped` for the tests to check.

Then :meth:`Rehearsal.command` gives the argv of ``docker run --read-only --tmpfs /tmp IMAGE
[args]``: the ``ENTRYPOINT`` found on the final stage's ``PATH``, then ``args`` or the ``CMD``,
run (when the tests run as root) in a mount namespace where every file system but /tmp is
read-only, as the ``USER`` ids (:meth:`Rehearsal.sandbox`).
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import stat
import subprocess
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from tests.support.dockerfile import (
    Dockerfile,
    DockerIgnore,
    Instruction,
    Stage,
    arg_pairs,
    key_values,
    parse,
    substitute,
)

# What python:3.11-slim-bookworm sets before any instruction of ours (its PATH, its locale).
BASE_PATH = "/usr/local/bin:/usr/local/sbin:/usr/sbin:/usr/bin:/sbin:/bin"
# Docker sets HOME from the user's passwd entry; the image's user has /nonexistent.
IMAGE_HOME = "/nonexistent"
_ABSOLUTE_PATH = re.compile(r"/[^\s:$]*")


class RehearsalError(RuntimeError):
    """A build step failed, or the Dockerfile asks for something this rehearsal cannot do."""


@dataclass
class Rehearsal:
    root: Path
    """The folder playing the image's root filesystem."""
    environment: dict[str, str]
    """The final stage's ENV, container paths mapped into :attr:`root`."""
    workdir: Path
    user: str | None
    entrypoint: list[str]
    cmd: list[str]
    skipped: list[Instruction] = field(default_factory=list)

    def host_path(self, container_path: str) -> Path:
        return _host(self.root, container_path)

    def command(self, *args: str) -> list[str]:
        """The argv of ``docker run --read-only --tmpfs /tmp IMAGE *args``: in the sandbox
        (:meth:`sandbox`) when this machine allows one, else as it is."""
        if not self.entrypoint:
            raise RehearsalError("the image has no ENTRYPOINT")
        executable = shutil.which(self.entrypoint[0], path=self.environment.get("PATH"))
        if executable is None:
            raise RehearsalError(f"{self.entrypoint[0]} is not on the image's PATH")
        return self.sandbox([executable, *self.entrypoint[1:], *(args or self.cmd)])

    @staticmethod
    def can_sandbox() -> bool:
        """Root, with ``unshare`` and ``setpriv`` (util-linux) and mount namespaces allowed."""
        if os.geteuid() != 0 or not (shutil.which("unshare") and shutil.which("setpriv")):
            return False
        probe = ["unshare", "--mount", "--propagation", "private", "true"]
        return subprocess.run(probe, capture_output=True, check=False).returncode == 0

    def sandbox(self, argv: list[str]) -> list[str]:
        """``argv`` as the container runs it: the image's USER (setpriv), every file system
        read-only but /tmp (``--read-only --tmpfs /tmp``), in a mount namespace of its own.

        The base interpreter is this machine's, which may live where the image's user cannot
        reach it (pyenv under a 0700 /root): then a read-only tmpfs covers that folder with only
        the interpreter's prefix mounted back, at the same path (its RUNPATH names it). Without
        the means for a sandbox (:meth:`can_sandbox`), ``argv`` runs as it is.
        """
        if not self.can_sandbox():
            return argv
        uid, _, gid = (self.user or "0").partition(":")
        if not uid.isdigit() or (gid and not gid.isdigit()):
            raise RehearsalError(f"USER {self.user}: only numeric ids can be played here")
        q = shlex.quote
        tmp, root = tempfile.gettempdir(), str(self.root)
        steps = [f"mount --bind {q(tmp)} {q(tmp)}", f"mount --bind {q(root)} {q(root)}"]
        steps.append(f"mount -o remount,bind,ro {q(root)}")
        prefix = Path(sys.base_prefix).resolve()
        hidden = _unreachable_ancestor(prefix)
        if hidden is not None:
            alias = f"{root}-interpreter"
            steps += [
                f"mkdir -p {q(alias)}",
                f"mount --bind {q(str(prefix))} {q(alias)}",
                f"mount -t tmpfs -o mode=0755,size=1m tmpfs {q(str(hidden))}",
                f"mkdir -p {q(str(prefix))}",
                f"mount --bind {q(alias)} {q(str(prefix))}",
                f"mount -o remount,bind,ro {q(str(prefix))}",
                f"mount -o remount,ro {q(str(hidden))}",
            ]
        steps.append("mount -o remount,bind,ro /")
        as_user = f"setpriv --reuid={uid} --regid={gid or uid} --clear-groups --"
        script = " && ".join(steps) + f' && exec {as_user} "$@"'
        return ["unshare", "--mount", "--propagation", "private", "--", "/bin/sh", "-c",
                script, "image-sandbox", *argv]  # fmt: skip

    def run_environment(self, **extra: str) -> dict[str, str]:
        """What the container's process sees: the image's ENV, HOME, and ``extra`` (-e)."""
        return {**self.environment, "HOME": IMAGE_HOME, **extra}


def _unreachable_ancestor(path: Path) -> Path | None:
    """The highest folder above ``path`` that other users may not enter, if any."""
    for ancestor in reversed(path.parents):
        if ancestor != Path("/") and not ancestor.stat().st_mode & stat.S_IXOTH:
            return ancestor
    return None


def rehearse(context: Path, root: Path) -> Rehearsal:
    """Build ``context``'s Dockerfile into ``root``; this interpreter plays the base image's
    Python (at ``/usr/local/bin/python`` in ``root``, as in the python images)."""
    dockerfile = parse((context / "Dockerfile").read_text())
    wanted = base_python_version(dockerfile)
    if wanted != sys.version_info[:2]:
        raise RehearsalError(f"the image's Python is {wanted}, this one {sys.version_info[:2]}")
    ignore = DockerIgnore.of(context)
    base_bin = _host(root, "/usr/local/bin")
    base_bin.mkdir(parents=True, exist_ok=True)
    for name in ("python", "python3", f"python3.{sys.version_info.minor}"):
        (base_bin / name).unlink(missing_ok=True)
        (base_bin / name).symlink_to(
            Path(getattr(sys, "_base_executable", sys.executable)).resolve()
        )
    base = {
        "PATH": f"{base_bin}:{BASE_PATH}",
        "LANG": "C.UTF-8",
        "HOME": os.environ.get("HOME", "/root"),  # pip's cache and configuration
        **{key: value for key, value in os.environ.items() if key.startswith("PIP_")},
    }
    for stage in dockerfile.stages[:-1]:
        _build(stage, dockerfile, context, ignore, root, base)
    return _final(dockerfile.final, dockerfile, root)


def base_python_version(dockerfile: Dockerfile) -> tuple[int, ...]:
    """The Python minor version of the image's base (``…python:3.11-slim…`` → (3, 11))."""
    found = re.search(r"python:(\d+)\.(\d+)", dockerfile.final.base)
    if found is None:
        raise RehearsalError(f"{dockerfile.final.base} is not a python image")
    return (int(found.group(1)), int(found.group(2)))


def _host(root: Path, container_path: str) -> Path:
    return root / container_path.lstrip("/")


class _StageState:
    def __init__(
        self, stage: Stage, dockerfile: Dockerfile, root: Path, base: dict[str, str]
    ) -> None:
        self.stage = stage
        self.root = root
        self.environment = dict(base)
        self.args: dict[str, str] = {}
        self.workdir = "/"
        self.dockerfile = dockerfile

    def scope(self) -> dict[str, str]:
        return {**self.args, **self.environment}

    def apply_common(self, instruction: Instruction) -> bool:
        """ARG, ENV and WORKDIR, shared by every stage; True when handled."""
        if instruction.keyword == "ARG":
            for key, value in arg_pairs(instruction.arguments):
                self.args[key] = value or self.dockerfile.global_args.get(key, "")
        elif instruction.keyword == "ENV":
            scope = self.scope()  # one ENV sees only the values from before it
            for key, value in key_values(instruction.arguments):
                if _ABSOLUTE_PATH.fullmatch(value):
                    value = str(_host(self.root, value))
                self.environment[key] = substitute(value, scope)
        elif instruction.keyword == "WORKDIR":
            path = substitute(instruction.arguments, self.scope())
            self.workdir = posix_join(self.workdir, path)
            self.cwd.mkdir(parents=True, exist_ok=True)
        else:
            return False
        return True

    @property
    def cwd(self) -> Path:
        return _host(self.root, self.workdir)


def posix_join(current: str, path: str) -> str:
    return path if path.startswith("/") else f"{current.rstrip('/')}/{path}"


def _build(
    stage: Stage,
    dockerfile: Dockerfile,
    context: Path,
    ignore: DockerIgnore,
    root: Path,
    base: dict[str, str],
) -> None:
    state = _StageState(stage, dockerfile, root, base)
    for instruction in stage.instructions[1:]:
        if state.apply_common(instruction):
            continue
        if instruction.keyword == "COPY" and "from" not in instruction.flags:
            _copy_from_context(instruction, state, context, ignore)
        elif instruction.keyword == "RUN":
            _run(instruction, state)
        elif instruction.keyword in {"LABEL", "EXPOSE", "USER", "CMD", "ENTRYPOINT"}:
            continue  # metadata of an intermediate stage: nothing to build
        else:
            raise RehearsalError(f"line {instruction.line}: cannot rehearse {instruction.text}")


def _copy_from_context(
    instruction: Instruction, state: _StageState, context: Path, ignore: DockerIgnore
) -> None:
    *sources, destination = (substitute(word, state.scope()) for word in instruction.words())
    target = posix_join(state.workdir, destination)
    for source in sources:
        if any(character in source for character in "*?["):
            raise RehearsalError(f"line {instruction.line}: wildcards are not rehearsed")
        relative = source.strip("/") or "."
        path = context / relative
        if not path.exists() or ignore.excludes(relative):
            raise RehearsalError(f"line {instruction.line}: {source} is not in the context")
        if path.is_dir():
            for file in sorted(path.rglob("*")):
                inside = file.relative_to(context).as_posix()
                if file.is_file() and not ignore.excludes(inside):
                    copied = _host(state.root, target) / file.relative_to(path)
                    copied.parent.mkdir(parents=True, exist_ok=True)
                    shutil.copy2(file, copied)
        else:
            copied = _host(state.root, target)
            if destination.endswith("/") or len(sources) > 1:
                copied = copied / path.name
            copied.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(path, copied)


def _run(instruction: Instruction, state: _StageState) -> None:
    argv = instruction.exec_form or ["/bin/sh", "-c", instruction.arguments]
    environment = {**state.args, **state.environment}
    environment.pop("PIP_NO_CACHE_DIR", None)  # the cache holds the same, hash-checked files
    completed = subprocess.run(
        argv, cwd=state.cwd, env=environment, capture_output=True, text=True, timeout=600
    )
    if completed.returncode != 0:
        raise RehearsalError(
            f"line {instruction.line}: RUN {instruction.arguments} failed "
            f"({completed.returncode}):\n{completed.stdout[-3000:]}\n{completed.stderr[-3000:]}"
        )


def _final(stage: Stage, dockerfile: Dockerfile, root: Path) -> Rehearsal:
    image_base = {"PATH": f"{_host(root, '/usr/local/bin')}:{BASE_PATH}", "LANG": "C.UTF-8"}
    state = _StageState(stage, dockerfile, root, image_base)
    user: str | None = None
    entrypoint: list[str] = []
    cmd: list[str] = []
    cmd_set = False
    skipped: list[Instruction] = []
    for instruction in stage.instructions[1:]:
        if state.apply_common(instruction):
            continue
        if instruction.keyword == "COPY" and "from" in instruction.flags:
            *sources, destination = instruction.words()
            for source in sources:
                if posix_join(state.workdir, destination).rstrip("/") != source.rstrip("/"):
                    raise RehearsalError(
                        f"line {instruction.line}: {source} is copied to another path; the "
                        "rehearsal shares one root between stages"
                    )
                if not _host(root, source).exists():
                    raise RehearsalError(f"line {instruction.line}: {source} was never built")
        elif instruction.keyword == "USER":
            user = substitute(instruction.arguments, state.scope())
        elif instruction.keyword in {"ENTRYPOINT", "CMD"}:
            if instruction.exec_form is None:
                raise RehearsalError(
                    f"line {instruction.line}: {instruction.keyword} in shell form"
                )
            if instruction.keyword == "CMD":
                cmd, cmd_set = instruction.exec_form, True
            else:
                entrypoint = instruction.exec_form
                if not cmd_set:
                    cmd = []  # an ENTRYPOINT drops the CMD inherited from the base image
        elif instruction.keyword == "RUN":
            skipped.append(instruction)
        elif instruction.keyword in {"LABEL", "EXPOSE", "STOPSIGNAL", "HEALTHCHECK"}:
            continue
        else:
            raise RehearsalError(f"line {instruction.line}: cannot rehearse {instruction.text}")
    return Rehearsal(root, state.environment, state.cwd, user, entrypoint, cmd, skipped)
