"""The node's persistent identity: node id, WireGuard key pair and signing key, in the state dir.

All survive restarts (like Talos' node-identity.yaml and kubespan-identity.yaml): a new
node id is a new affiliate, and a new key makes every peer drop the tunnel until they see
the new record. The private key never leaves the state dir, which is 0700 with 0600 files.
"""

from __future__ import annotations

import base64
import binascii
import os
import re
from dataclasses import dataclass, field
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey

from membership import keys
from membership.limits import AFFILIATE_ID_MAX
from membership.secrets import NODE_ID_SIZE
from membership.secrets import new_node_id as _encode_node_id

NODE_ID_FILE = "node-id"
PRIVATE_KEY_FILE = "wireguard.key"
SIGNING_KEY_FILE = "node-signing.key"

# Talos-style base62 ids (nodes made before signing existed), or the id bound to the key.
_NODE_ID_RE = re.compile(f"[0-9A-Za-z]{{1,{AFFILIATE_ID_MAX}}}|kn1\\.[a-z2-7]{{52}}")


class IdentityError(Exception):
    """The state dir or a file in it is unusable; the message names the path and the fix."""


@dataclass(frozen=True, slots=True)
class Identity:
    node_id: str
    public_key: str
    private_key: str = field(repr=False)
    private_key_path: Path
    # Signs this node's writes (discovery.client.signing); None only in tests that build an
    # Identity by hand.
    signing_key: Ed25519PrivateKey | None = field(default=None, repr=False, compare=False)

    @property
    def bound(self) -> bool:
        """True if `node_id` is the id bound to `signing_key` (writes can be signed)."""
        return self.signing_key is not None and self.node_id == keys.node_affiliate_id(
            keys.public_bytes(self.signing_key)
        )


def new_node_id() -> str:
    """Base62 of 32 random bytes, as Talos' DefaultNodeIdentitySize."""
    return _encode_node_id(os.urandom(NODE_ID_SIZE))


def generate_private_key() -> str:
    """A new X25519 private key, base64 (what `wg genkey` prints)."""
    return base64.b64encode(X25519PrivateKey.generate().private_bytes_raw()).decode()


def public_key_of(private_key: str) -> str:
    """The WireGuard public key of a base64 private key (`wg pubkey`); raises ValueError."""
    try:
        raw = base64.b64decode(private_key, validate=True)
    except binascii.Error:
        raise ValueError("not base64") from None
    if len(raw) != 32:
        raise ValueError(f"decodes to {len(raw)} bytes, not 32")
    public = X25519PrivateKey.from_private_bytes(raw).public_key()
    return base64.b64encode(public.public_bytes_raw()).decode()


def _ensure_dir(state_dir: Path) -> None:
    try:
        state_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        # mkdir's mode is filtered by the umask and ignored for an existing dir.
        if state_dir.stat().st_mode & 0o777 != 0o700:
            state_dir.chmod(0o700)
    except OSError as exc:
        raise IdentityError(f"{state_dir}: cannot create the state dir: {exc}") from None


def _create_once(path: Path, content: str) -> str:
    """Write `content` atomically unless `path` exists; return what `path` then holds."""
    tmp = path.with_name(f".{path.name}.{os.urandom(8).hex()}.tmp")
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as handle:
            handle.write(content)
            handle.flush()
            os.fsync(handle.fileno())
        try:
            # link() refuses to overwrite: a concurrent first start keeps one identity.
            os.link(tmp, path)
        except FileExistsError:
            return path.read_text()
        dir_fd = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)
        return content
    except OSError as exc:
        raise IdentityError(f"{path}: cannot write: {exc}") from None
    finally:
        tmp.unlink(missing_ok=True)


def _read(path: Path) -> str | None:
    try:
        if path.stat().st_mode & 0o077:
            path.chmod(0o600)  # tighten a copy made with a loose umask
        return path.read_text()
    except FileNotFoundError:
        return None
    except (OSError, UnicodeDecodeError) as exc:
        raise IdentityError(f"{path}: cannot read: {exc}") from None


def _corrupt(path: Path, problem: str) -> IdentityError:
    return IdentityError(
        f"{path}: corrupt ({problem}). Restore it from a backup, or delete it to generate "
        "a new one: the node then joins as a new member and peers must relearn it."
    )


def _signing_key(state_dir: Path) -> Ed25519PrivateKey:
    path = state_dir / SIGNING_KEY_FILE
    text = _read(path)
    if text is None:
        seed = Ed25519PrivateKey.generate().private_bytes_raw()
        text = _create_once(path, base64.b64encode(seed).decode() + "\n")
    try:
        raw = base64.b64decode(text.strip(), validate=True)
        return Ed25519PrivateKey.from_private_bytes(raw)
    except (binascii.Error, ValueError):
        raise _corrupt(path, "not a base64 Ed25519 private key (32 bytes)") from None


def load_or_create_identity(state_dir: Path) -> Identity:
    """Load the identity from `state_dir`, creating missing parts; idempotent.

    A new node's id is bound to its signing key (membership.keys), so it can sign its writes;
    a node id made before signing existed is kept (the node keeps writing unsigned, which
    open clusters allow; a locked cluster needs a fresh node id).

    Raises IdentityError when the dir cannot be used or a file is corrupt (never replaced
    silently: that would change the node's identity behind the operator's back).
    """
    _ensure_dir(state_dir)
    signing_key = _signing_key(state_dir)
    bound_id = keys.node_affiliate_id(keys.public_bytes(signing_key))
    id_path = state_dir / NODE_ID_FILE
    text = _read(id_path)
    if text is None:
        text = _create_once(id_path, bound_id + "\n")
    node_id = text.strip()
    if not _NODE_ID_RE.fullmatch(node_id):
        raise _corrupt(id_path, f"expected 1 to {AFFILIATE_ID_MAX} base62 characters")
    if node_id.startswith(keys.NODE_PREFIX) and node_id != bound_id:
        raise _corrupt(id_path, f"bound to another key than {SIGNING_KEY_FILE}'s")

    key_path = state_dir / PRIVATE_KEY_FILE
    text = _read(key_path)
    if text is None:
        text = _create_once(key_path, generate_private_key() + "\n")
    private_key = text.strip()
    try:
        public_key = public_key_of(private_key)
    except ValueError as exc:
        raise _corrupt(key_path, f"not a base64 X25519 private key: {exc}") from None
    return Identity(
        node_id=node_id,
        public_key=public_key,
        private_key=private_key,
        private_key_path=key_path,
        signing_key=signing_key,
    )
