"""The layering of DESIGN section 2 as allowlists: which of our modules each layer may import.

A module may import its own package freely; everything else of ours must be listed here.
"""

from __future__ import annotations

import grimp
import pytest

OURS = ("discovery", "membership", "storage", "kubespan")

# Most specific prefix first; each maps to the prefixes of ours it may import directly.
ALLOWED: list[tuple[str, tuple[str, ...]]] = [
    ("membership", ()),
    ("storage", ("membership",)),
    ("discovery.version", ()),
    ("discovery.proto", ()),
    ("discovery.logs", ()),
    # The clients sign writes: keys and the signature base are the domain's, shared with
    # the service so both build the same bytes.
    (
        "discovery.client",
        (
            "discovery.proto",
            "discovery.version",
            "membership.codec",
            "membership.keys",
            "membership.signatures",
        ),
    ),
    ("discovery.core", ("membership", "storage.base", "storage.errors", "storage.leadership")),
    ("discovery.settings", ("membership.limits",)),
    ("discovery.startup", ("discovery.settings",)),
    (
        "discovery.http",
        ("discovery.core", "discovery.settings", "discovery.version", "membership"),
    ),
    (
        "discovery.grpc",
        (
            "discovery.core",
            "discovery.proto",
            "discovery.settings",
            "discovery.startup",
            "membership",
        ),
    ),
    # The composition root and the command line wire everything of the service together.
    ("discovery", ("discovery", "storage", "membership")),
    ("kubespan", ("membership", "discovery.client", "discovery.version", "discovery.logs")),
]


def _rule(module: str) -> tuple[str, tuple[str, ...]]:
    for prefix, allowed in ALLOWED:
        if module == prefix or module.startswith(prefix + "."):
            return prefix, allowed
    raise AssertionError(f"{module} is in no layer of tests/test_layering.py")


def _within(module: str, prefix: str) -> bool:
    return module == prefix or module.startswith(prefix + ".")


@pytest.fixture(scope="module")
def graph() -> grimp.ImportGraph:
    return grimp.build_graph(*OURS, include_external_packages=False)


def test_every_import_of_ours_is_allowed(graph: grimp.ImportGraph) -> None:
    broken = []
    for module in sorted(graph.modules):
        if module.split(".")[0] not in OURS:
            continue
        own, allowed = _rule(module)
        for imported in graph.find_modules_directly_imported_by(module):
            if _within(imported, own) or any(_within(imported, a) for a in allowed):
                continue
            broken.append(f"{module} -> {imported}")
    assert broken == [], "imports outside the layer's allowlist:\n" + "\n".join(broken)


def test_the_rules_name_real_modules(graph: grimp.ImportGraph) -> None:
    names = set(graph.modules)
    for prefix, allowed in ALLOWED:
        for name in (prefix, *allowed):
            assert any(_within(m, name) for m in names), f"{name} names no module"
