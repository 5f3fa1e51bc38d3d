"""Reading the Dockerfile and .dockerignore the way Docker does, for the image's tests.

A small parser, honest about its reach: parser directives, comments, line continuations,
instructions in JSON (exec) and shell form, flags (``--from=``, ``--chown=`` …), ``ARG`` and
``ENV`` pairs with quotes, and ``$VAR`` / ``${VAR}`` / ``${VAR:-default}`` substitution with
Docker's rule that one ``ENV`` instruction sees only the values from before it. What it does
not understand — heredocs, another escape character, an unknown instruction — is an error, not
a guess.

``.dockerignore`` follows Docker's matcher (moby/patternmatcher): the last pattern that matches
a path or one of its parent folders decides, ``!`` re-includes, ``*`` and ``?`` stay inside one
path segment, ``**`` crosses any number of them.
"""

from __future__ import annotations

import json
import posixpath
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

INSTRUCTIONS = frozenset(
    {
        "ADD", "ARG", "CMD", "COPY", "ENTRYPOINT", "ENV", "EXPOSE", "FROM", "HEALTHCHECK",
        "LABEL", "MAINTAINER", "ONBUILD", "RUN", "SHELL", "STOPSIGNAL", "USER", "VOLUME",
        "WORKDIR",
    }
)  # fmt: skip
# Instructions whose arguments may be a JSON array (the exec form).
JSON_FORMS = frozenset({"ADD", "CMD", "COPY", "ENTRYPOINT", "RUN", "SHELL", "VOLUME"})
_DIRECTIVE = re.compile(r"#\s*([a-zA-Z][a-zA-Z0-9]*)\s*=\s*(.+?)\s*$")
_FLAG = re.compile(r"--([a-z][a-z-]*)(?:=(\S*))?$")
_HEREDOC = re.compile(r"<<-?\s*[\"']?[A-Za-z_]")


class DockerfileError(ValueError):
    """The Dockerfile is not valid, or uses syntax this reader does not support."""


@dataclass(frozen=True)
class Instruction:
    keyword: str
    """Upper case: ``COPY``, ``RUN`` …"""
    text: str
    """The arguments as written, continuation lines joined, flags included."""
    line: int
    flags: Mapping[str, str]
    """``--from=builder`` → ``{"from": "builder"}`` (a bare ``--link`` → ``{"link": ""}``)."""
    arguments: str
    """The arguments after the flags."""
    exec_form: list[str] | None
    """The JSON array, for an instruction written in exec form; None for the shell form."""

    def words(self) -> list[str]:
        """The arguments split as Docker splits COPY/ADD/EXPOSE: JSON, else on whitespace."""
        return list(self.exec_form) if self.exec_form is not None else self.arguments.split()


@dataclass
class Stage:
    index: int
    base: str
    """The image (or earlier stage) it starts from, ARGs substituted."""
    name: str | None
    instructions: list[Instruction] = field(default_factory=list)

    def all(self, keyword: str) -> list[Instruction]:
        return [item for item in self.instructions if item.keyword == keyword]

    def last(self, keyword: str) -> Instruction | None:
        found = self.all(keyword)
        return found[-1] if found else None


@dataclass
class Dockerfile:
    directives: dict[str, str]
    global_args: dict[str, str]
    """ARGs declared before the first FROM, with their defaults."""
    stages: list[Stage]

    @property
    def final(self) -> Stage:
        return self.stages[-1]

    def stage(self, reference: str) -> Stage | None:
        """A stage by name or by index, as ``COPY --from=`` and ``FROM`` refer to one."""
        for stage in self.stages:
            if stage.name == reference or str(stage.index) == reference:
                return stage
        return None


def substitute(text: str, variables: Mapping[str, str]) -> str:
    """``$VAR``, ``${VAR}``, ``${VAR:-default}`` and ``${VAR:+alternative}`` as Docker expands
    them; an unset variable is empty, ``\\$`` is a literal dollar."""

    def replace(match: re.Match[str]) -> str:
        if match.group("escaped"):
            return "$"
        name = match.group("braced") or match.group("bare")
        value = variables.get(name, "")
        operator, word = match.group("operator"), match.group("word")
        if operator == ":-":
            return value or substitute(word, variables)
        if operator == ":+":
            return substitute(word, variables) if value else ""
        if operator is not None:
            raise DockerfileError(f"unsupported substitution ${{{name}{operator}…}}")
        return value

    pattern = (
        r"(?P<escaped>\\\$)"
        r"|\$\{(?P<braced>[A-Za-z_][A-Za-z0-9_]*)(?:(?P<operator>:[-+?]|[-+?])(?P<word>[^}]*))?\}"
        r"|\$(?P<bare>[A-Za-z_][A-Za-z0-9_]*)"
    )
    return re.sub(pattern, replace, text)


def key_values(text: str) -> list[tuple[str, str]]:
    """``KEY=value KEY2="a b"`` pairs (ENV, LABEL, ARG), quotes and backslashes resolved as
    Docker's word splitter does; the legacy ``ENV KEY value`` form is one pair."""
    words = _split_words(text)
    if words and "=" not in words[0]:
        first, _, rest = text.strip().partition(" ")
        return [(first, rest.strip())]
    pairs = []
    for word in words:
        if "=" not in word:
            raise DockerfileError(f"expected KEY=value, got {word!r} in {text!r}")
        key, _, value = word.partition("=")
        pairs.append((key, value))
    return pairs


def _split_words(text: str) -> list[str]:
    words: list[str] = []
    current: list[str] = []
    quote: str | None = None
    in_word = False
    characters = iter(text)
    for character in characters:
        if quote is None and character.isspace():
            if in_word:
                words.append("".join(current))
                current, in_word = [], False
            continue
        in_word = True
        if character == quote:
            quote = None
        elif quote is None and character in "\"'":
            quote = character
        elif character == "\\" and quote != "'":
            current.append(next(characters, ""))
        else:
            current.append(character)
    if quote is not None:
        raise DockerfileError(f"unterminated quote in {text!r}")
    if in_word:
        words.append("".join(current))
    return words


def _logical_lines(source: str) -> tuple[dict[str, str], list[tuple[int, str]]]:
    """Parser directives, and the instructions as (first line number, joined text)."""
    directives: dict[str, str] = {}
    lines: list[tuple[int, str]] = []
    reading_directives = True
    pending: list[str] = []
    start = 0
    for number, raw in enumerate(source.splitlines(), start=1):
        stripped = raw.strip()
        if reading_directives:
            directive = _DIRECTIVE.fullmatch(stripped)
            if directive:
                directives[directive.group(1).lower()] = directive.group(2)
                continue
            reading_directives = False
        if stripped.startswith("#") or not stripped:
            continue  # comments and blank lines vanish, even between continuation lines
        if not pending:
            start = number
        if stripped.endswith("\\"):
            pending.append(stripped[:-1].rstrip())
            continue
        pending.append(stripped)
        lines.append((start, " ".join(part for part in pending if part)))
        pending = []
    if pending:
        raise DockerfileError(f"line {start}: the last instruction ends in a continuation")
    if directives.get("escape", "\\") != "\\":
        raise DockerfileError("only the default escape character (backslash) is supported")
    return directives, lines


def _instruction(number: int, text: str) -> Instruction:
    keyword, _, rest = text.partition(" ")
    keyword = keyword.upper()
    if keyword not in INSTRUCTIONS:
        raise DockerfileError(f"line {number}: unknown instruction {keyword}")
    rest = rest.strip()
    if keyword in {"RUN", "COPY", "ADD"} and _HEREDOC.search(rest):
        raise DockerfileError(f"line {number}: heredocs are not supported by this reader")
    flags: dict[str, str] = {}
    arguments = rest
    while arguments.startswith("--"):
        word, _, remainder = arguments.partition(" ")
        flag = _FLAG.fullmatch(word)
        if flag is None:
            raise DockerfileError(f"line {number}: malformed flag {word!r}")
        flags[flag.group(1)] = flag.group(2) or ""
        arguments = remainder.strip()
    if not arguments and keyword not in {"CMD", "ENTRYPOINT"}:
        raise DockerfileError(f"line {number}: {keyword} needs arguments")
    exec_form = None
    if keyword in JSON_FORMS and arguments.startswith("["):
        try:
            parsed = json.loads(arguments)
        except json.JSONDecodeError:
            parsed = None  # Docker runs a broken JSON array as a shell command
        if isinstance(parsed, list) and all(isinstance(item, str) for item in parsed):
            exec_form = parsed
    return Instruction(keyword, rest, number, flags, arguments, exec_form)


def parse(source: str) -> Dockerfile:
    directives, lines = _logical_lines(source)
    global_args: dict[str, str] = {}
    stages: list[Stage] = []
    for number, text in lines:
        instruction = _instruction(number, text)
        if instruction.keyword == "FROM":
            words = instruction.arguments.split()
            if len(words) not in (1, 3) or (len(words) == 3 and words[1].lower() != "as"):
                raise DockerfileError(f"line {number}: FROM image [AS name]")
            base = substitute(words[0], global_args)
            name = words[2].lower() if len(words) == 3 else None
            if name is not None and any(stage.name == name for stage in stages):
                raise DockerfileError(f"line {number}: a second stage named {name}")
            stages.append(Stage(len(stages), base, name, [instruction]))
        elif not stages:
            if instruction.keyword != "ARG":
                raise DockerfileError(f"line {number}: only ARG may come before the first FROM")
            for key, value in arg_pairs(instruction.arguments):
                global_args[key] = value
        else:
            stages[-1].instructions.append(instruction)
    if not stages:
        raise DockerfileError("no FROM: nothing to build")
    return Dockerfile(directives, global_args, stages)


def arg_pairs(text: str) -> list[tuple[str, str]]:
    """ARG NAME or ARG NAME=default (several allowed)."""
    return [(key, value) for key, _, value in (word.partition("=") for word in _split_words(text))]


def environment(stage: Stage, dockerfile: Dockerfile, base: Mapping[str, str]) -> dict[str, str]:
    """The ENV a stage ends with, starting from ``base`` (the base image's environment).

    Each ENV instruction is expanded against the values from before it, as Docker does.
    """
    variables = dict(base)
    args: dict[str, str] = {}
    for instruction in stage.instructions:
        if instruction.keyword == "ARG":
            for key, value in arg_pairs(instruction.arguments):
                args[key] = value if value else dockerfile.global_args.get(key, "")
        elif instruction.keyword == "ENV":
            scope = {**args, **variables}
            pairs = key_values(instruction.arguments)
            variables.update({key: substitute(value, scope) for key, value in pairs})
    return variables


# --- .dockerignore ------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Pattern:
    text: str
    exclusion: bool
    regex: re.Pattern[str]


def _pattern_regex(pattern: str) -> re.Pattern[str]:
    out = "^"
    index = 0
    while index < len(pattern):
        character = pattern[index]
        if pattern.startswith("**", index):
            index += 2
            if pattern.startswith("/", index):
                index += 1
            out += ".*" if index >= len(pattern) else "(.*/)?"
            continue
        if character == "*":
            out += "[^/]*"
        elif character == "?":
            out += "[^/]"
        elif character == "\\" and index + 1 < len(pattern):
            index += 1
            out += re.escape(pattern[index])
        elif character in ".+()|{}$^":
            out += "\\" + character
        else:
            out += character  # letters, '/', and [...] classes as filepath.Match has them
        index += 1
    return re.compile(out + "$")


class DockerIgnore:
    """The build context's exclusions, from a ``.dockerignore`` file's text."""

    def __init__(self, text: str) -> None:
        self.patterns: list[_Pattern] = []
        for raw in text.splitlines():
            line = raw.strip()
            if not line or line.startswith("#"):
                continue
            exclusion = line.startswith("!")
            line = line[1:].strip() if exclusion else line
            cleaned = posixpath.normpath(line).lstrip("/")
            if cleaned in ("", "."):
                continue
            self.patterns.append(_Pattern(line, exclusion, _pattern_regex(cleaned)))

    @classmethod
    def of(cls, context: Path) -> DockerIgnore:
        file = context / ".dockerignore"
        return cls(file.read_text() if file.exists() else "")

    def excludes(self, path: str) -> bool:
        """Whether ``path`` (relative to the context, with '/') stays out of the build."""
        path = posixpath.normpath(path)
        parts = path.split("/")
        candidates = ["/".join(parts[: end + 1]) for end in range(len(parts))]
        excluded = False
        for pattern in self.patterns:
            if any(pattern.regex.match(candidate) for candidate in candidates):
                excluded = not pattern.exclusion
        return excluded
