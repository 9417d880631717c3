"""A small nginx configuration parser: enough to check what the proxy files route where."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

_TOKEN = re.compile(r'"(?:[^"\\]|\\.)*"|\'(?:[^\'\\]|\\.)*\'|#[^\n]*|[{};]|[^\s{};"\'#]+')


@dataclass
class Directive:
    name: str
    args: list[str]
    block: list[Directive] | None = None

    def all(self, name: str) -> list[Directive]:
        return [d for d in self.block or [] if d.name == name]

    def one(self, name: str) -> Directive:
        found = self.all(name)
        assert len(found) == 1, f"{self.name} {' '.join(self.args)}: {len(found)} x {name}"
        return found[0]

    def value(self, name: str) -> list[str] | None:
        """Arguments of `name` here, or inherited from an enclosing block (nginx inheritance)."""
        found = self.all(name)
        return found[-1].args if found else None


def _tokens(text: str) -> list[str]:
    return [t for t in _TOKEN.findall(text) if not t.startswith("#")]


def parse(path: Path) -> Directive:
    tokens = _tokens(path.read_text())
    root = Directive("main", [], [])
    stack = [root]
    words: list[str] = []
    for token in tokens:
        if token == ";":
            assert words, f"{path}: empty directive"
            assert stack[-1].block is not None
            stack[-1].block.append(Directive(words[0], words[1:]))
            words = []
        elif token == "{":
            block = Directive(words[0], words[1:], [])
            assert stack[-1].block is not None
            stack[-1].block.append(block)
            stack.append(block)
            words = []
        elif token == "}":
            assert not words, f"{path}: missing ';' before '}}' after {words}"
            stack.pop()
        else:
            words.append(token.strip("\"'"))
    assert len(stack) == 1 and not words, f"{path}: unbalanced braces"
    return root


def inherited(chain: list[Directive], name: str) -> list[str] | None:
    """The effective arguments of `name` in the innermost block of `chain` (outermost first)."""
    for block in reversed(chain):
        value = block.value(name)
        if value is not None:
            return value
    return None


def headers(chain: list[Directive], directive: str) -> dict[str, str]:
    """Headers set by `directive` (proxy_set_header, grpc_set_header) in the innermost block of
    `chain` that sets any: nginx inherits these only into blocks that set none themselves."""
    for block in reversed(chain):
        found = block.all(directive)
        if found:
            return {d.args[0].lower(): d.args[1] for d in found}
    return {}
