"""Local base images for machines that cannot pull from a container registry.

    python -m tests.deploy.live.bases        # build whichever is missing, print the names

Every image the deployment files name (python:3.11-slim-bookworm, postgres:16, nginx:1.27) is
a build argument or a compose variable, so elsewhere the official images are used. Here:

- the Python base is a Debian bookworm `debootstrap --variant=minbase` tree (bookworm's
  python3 is 3.11) imported with `podman import`. It carries the host's CA bundle, and pip is
  pointed at it, because builds reach Debian and PyPI through the same TLS path as the host;
- the postgres and nginx stand-ins are built on it from Debian's own packages
  (tests/deploy/live/standins/).

The Debian mirror is read from the host's apt sources at run time, never written down here.
Tags carry a hash of their inputs, so a change rebuilds them and an unchanged one is reused
from podman's storage across runs on the same machine.
"""

from __future__ import annotations

import hashlib
import re
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from tests.deploy.live.podman import build, engine_env, image_exists

HERE = Path(__file__).resolve().parent
STANDINS = HERE / "standins"
SUITE = "bookworm"
PACKAGES = ("python3", "python3-venv", "python3-pip", "python-is-python3", "ca-certificates")
HOST_CA_BUNDLE = Path("/etc/ssl/certs/ca-certificates.crt")
APT_SOURCES = (Path("/etc/apt/sources.list"), Path("/etc/apt/sources.list.d"))


@dataclass(frozen=True)
class Bases:
    """Image references to pass as build arguments and compose variables."""

    python: str
    postgres: str
    nginx: str


def _inputs_hash(*parts: bytes) -> str:
    digest = hashlib.sha256()
    for part in parts:
        digest.update(part)
        digest.update(b"\0")
    return digest.hexdigest()[:12]


def _source_files() -> list[Path]:
    files: list[Path] = []
    for path in APT_SOURCES:
        if path.is_file():
            files.append(path)
        elif path.is_dir():
            files += sorted(p for p in path.iterdir() if p.suffix in (".list", ".sources"))
    return files


def debian_mirror() -> str:
    """The first http(s) URI serving `bookworm main` in the host's apt sources."""
    for path in _source_files():
        text = path.read_text()
        if path.suffix == ".sources":
            # deb822 stanzas: Types / URIs / Suites / Components, blank-line separated.
            for stanza in re.split(r"\n\s*\n", text):
                fields: dict[str, list[str]] = dict(
                    (k.strip().lower(), v.split())
                    for k, _, v in (line.partition(":") for line in stanza.splitlines())
                    if v and not k.startswith("#")
                )
                if SUITE in fields.get("suites", []) and "main" in fields.get("components", []):
                    return fields["uris"][0]
        else:
            for line in text.splitlines():
                words = line.split("#")[0].split()
                if len(words) >= 4 and words[0] == "deb" and words[2] == SUITE:
                    uri = next(w for w in words[1:] if not w.startswith("["))
                    if "main" in words[3:]:
                        return uri
    raise RuntimeError(f"no `{SUITE} main` Debian source in the host's apt configuration")


def _python_base(tag: str) -> None:
    with tempfile.TemporaryDirectory(prefix="debootstrap-") as tmp:
        root = Path(tmp) / "root"
        subprocess.run(
            ["debootstrap", "--variant=minbase", f"--include={','.join(PACKAGES)}",
             SUITE, str(root), debian_mirror()],
            check=True, capture_output=True, timeout=1200,
        )  # fmt: skip
        # Trust what the host trusts: the bundle itself (what pip and Python's ssl read), and
        # a copy that update-ca-certificates keeps when a later apt install re-runs it.
        shutil.copyfile(HOST_CA_BUNDLE, root / "etc/ssl/certs/ca-certificates.crt")
        shutil.copyfile(HOST_CA_BUNDLE, root / "usr/local/share/ca-certificates/host-ca.crt")
        (root / "etc/pip.conf").write_text("[global]\ncert = /etc/ssl/certs/ca-certificates.crt\n")
        for cache in ("var/cache/apt/archives", "var/lib/apt/lists"):
            for entry in (root / cache).glob("*"):
                if entry.is_file():
                    entry.unlink()
        with subprocess.Popen(["tar", "-C", str(root), "-c", "."], stdout=subprocess.PIPE) as tar:
            subprocess.run(
                ["podman", "import", "--change", 'CMD ["python3"]', "-", tag],
                stdin=tar.stdout, check=True, capture_output=True, env=engine_env(), timeout=600,
            )  # fmt: skip
        if tar.returncode != 0:
            raise RuntimeError("tar of the debootstrap tree failed")


def _standin(name: str, python: str, log: list[str] | None) -> str:
    directory = STANDINS / name
    digest = _inputs_hash(python.encode(), *(p.read_bytes() for p in sorted(directory.iterdir())))
    tag = f"localhost/kubespan-standin-{name}:{digest}"
    if not image_exists(tag):
        seconds = build(
            directory, tag, file=directory / "Containerfile", build_args={"BASE": python}
        )
        if log is not None:
            log.append(f"{tag}: built in {seconds:.0f}s")
    return tag


def ensure_bases(log: list[str] | None = None) -> Bases:
    """Build whichever local base image is missing; `log` collects what was built, and how long."""
    digest = _inputs_hash(" ".join(PACKAGES).encode(), SUITE.encode(), HOST_CA_BUNDLE.read_bytes())
    python = f"localhost/kubespan-base-python:{SUITE}-{digest}"
    if not image_exists(python):
        started = time.monotonic()
        _python_base(python)
        if log is not None:
            log.append(f"{python}: debootstrap + import in {time.monotonic() - started:.0f}s")
    return Bases(
        python=python,
        postgres=_standin("postgres", python, log),
        nginx=_standin("nginx", python, log),
    )


if __name__ == "__main__":
    built: list[str] = []
    result = ensure_bases(built)
    print("\n".join(built) or "all base images present", file=sys.stderr)
    print(f"PYTHON_IMAGE={result.python}\nPOSTGRES_IMAGE={result.postgres}")
    print(f"NGINX_IMAGE={result.nginx}")
