"""A small Dockerfile reader: stages and their instructions, as the tests need them."""

from __future__ import annotations

import json
import shlex
from dataclasses import dataclass, field

from tests.deploy.deploy_support import DEPLOY

DOCKERFILE = DEPLOY / "Dockerfile"


@dataclass
class Stage:
    name: str
    base: str
    instructions: list[tuple[str, str]] = field(default_factory=list)

    def all(self, keyword: str) -> list[str]:
        return [args for kw, args in self.instructions if kw == keyword]

    def last(self, keyword: str) -> str:
        found = self.all(keyword)
        assert found, f"stage {self.name}: no {keyword}"
        return found[-1]


def _instructions(text: str) -> list[tuple[str, str]]:
    result: list[tuple[str, str]] = []
    pending = ""
    for raw in text.splitlines():
        line = raw.strip()
        if line.startswith("#") and not pending:
            continue
        if not line or line.startswith("#"):
            continue
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        line, pending = pending + line, ""
        keyword, _, args = line.partition(" ")
        result.append((keyword.upper(), args.strip()))
    return result


def stages() -> dict[str, Stage]:
    args: dict[str, str] = {}
    stages: dict[str, Stage] = {}
    current: Stage | None = None
    for keyword, rest in _instructions(DOCKERFILE.read_text()):
        if keyword == "ARG" and current is None:
            name, _, default = rest.partition("=")
            args[name] = default
        elif keyword == "FROM":
            words = rest.split()
            base = words[0]
            for name, value in args.items():
                base = base.replace("${" + name + "}", value)
            assert len(words) == 3 and words[1].upper() == "AS", f"unnamed stage: FROM {rest}"
            current = stages[words[2]] = Stage(words[2], base)
        else:
            assert current is not None, f"{keyword} before FROM"
            current.instructions.append((keyword, rest))
    return stages


def exec_form(args: str) -> list[str]:
    value = json.loads(args)
    assert isinstance(value, list) and all(isinstance(v, str) for v in value)
    return value


def stage_env(stage: Stage) -> dict[str, str]:
    env: dict[str, str] = {}
    for args in stage.all("ENV"):
        for word in shlex.split(args):
            key, _, value = word.partition("=")
            env[key] = value
    return env


def context_copies(stage: Stage) -> list[tuple[list[str], str]]:
    """(sources, destination) of the COPY instructions that read the build context."""
    copies = []
    for args in stage.all("COPY"):
        words = args.split()
        if any(w.startswith("--from=") for w in words):
            continue
        paths = [w for w in words if not w.startswith("--")]
        copies.append((paths[:-1], paths[-1]))
    return copies
