from __future__ import annotations

import base64
import os
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey

from kubespan import identity
from kubespan.identity import (
    NODE_ID_FILE,
    PRIVATE_KEY_FILE,
    SIGNING_KEY_FILE,
    IdentityError,
    generate_private_key,
    load_or_create_identity,
    new_node_id,
    public_key_of,
)
from membership import keys
from membership.secrets import b62decode


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


@pytest.fixture
def loose_umask() -> Iterator[None]:
    old = os.umask(0o022)
    try:
        yield
    finally:
        os.umask(old)


def test_creates_private_state_dir_and_files(tmp_path: Path, loose_umask: None) -> None:
    state = tmp_path / "var" / "lib" / "kubespan"
    ident = load_or_create_identity(state)
    assert mode(state) == 0o700
    assert mode(state / NODE_ID_FILE) == 0o600
    assert mode(state / PRIVATE_KEY_FILE) == 0o600
    assert ident.private_key_path == state / PRIVATE_KEY_FILE
    assert mode(state / SIGNING_KEY_FILE) == 0o600
    assert sorted(p.name for p in state.iterdir()) == [
        NODE_ID_FILE,
        SIGNING_KEY_FILE,
        PRIVATE_KEY_FILE,
    ]


def test_identity_is_reused_across_restarts(tmp_path: Path) -> None:
    first = load_or_create_identity(tmp_path)
    second = load_or_create_identity(tmp_path)
    assert first == second


def test_talos_style_node_ids_are_base62_of_32_bytes_and_kept(tmp_path: Path) -> None:
    # Nodes made before signing existed keep their Talos-style id (and write unsigned).
    legacy = new_node_id()
    assert legacy.isalnum() and legacy.isascii()
    assert len(b62decode(legacy)) == 32
    assert new_node_id() != legacy
    (tmp_path / NODE_ID_FILE).write_text(legacy + "\n")
    ident = load_or_create_identity(tmp_path)
    assert ident.node_id == legacy
    assert not ident.bound


def test_a_new_node_id_is_bound_to_the_signing_key(tmp_path: Path) -> None:
    ident = load_or_create_identity(tmp_path)
    assert ident.signing_key is not None and ident.bound
    assert keys.node_key_of(ident.node_id) == keys.public_bytes(ident.signing_key)
    again = load_or_create_identity(tmp_path)
    assert again.node_id == ident.node_id and again.bound


def test_a_bound_id_of_another_key_or_a_bad_signing_key_is_corrupt(tmp_path: Path) -> None:
    load_or_create_identity(tmp_path)
    (tmp_path / NODE_ID_FILE).write_text(keys.node_affiliate_id(bytes(32)) + "\n")
    with pytest.raises(IdentityError, match="bound to another key"):
        load_or_create_identity(tmp_path)
    (tmp_path / SIGNING_KEY_FILE).write_text("not a key\n")
    with pytest.raises(IdentityError, match="not a base64 Ed25519 private key"):
        load_or_create_identity(tmp_path)


def test_key_pair_is_a_wireguard_key_pair(tmp_path: Path) -> None:
    ident = load_or_create_identity(tmp_path)
    raw = base64.b64decode(ident.private_key)
    expected = X25519PrivateKey.from_private_bytes(raw).public_key().public_bytes_raw()
    assert base64.b64decode(ident.public_key) == expected
    # wg(8) reads the file directly: base64 plus newline.
    assert (tmp_path / PRIVATE_KEY_FILE).read_text() == ident.private_key + "\n"


def test_private_key_is_not_in_repr(tmp_path: Path) -> None:
    ident = load_or_create_identity(tmp_path)
    assert ident.private_key not in repr(ident)


def test_known_key_vector() -> None:
    # A pair produced by wg genkey / wg pubkey (wireguard-tools).
    private = "QPxJ53ePWyPSeylhemCVlGJCqusmxFG77WSxpVxGKH0="
    assert public_key_of(private) == "c8/LgGrhPQbEl8EdfMHqppaNEtyBIdrMgu5BPRVCDQU="


def test_generated_keys_differ() -> None:
    assert generate_private_key() != generate_private_key()


@pytest.mark.parametrize("text", ["", "has space\n", "x" * 257, "dash-ed"])
def test_corrupt_node_id(tmp_path: Path, text: str) -> None:
    (tmp_path / NODE_ID_FILE).write_text(text)
    with pytest.raises(IdentityError, match=f"{tmp_path / NODE_ID_FILE}: corrupt"):
        load_or_create_identity(tmp_path)
    # Never silently replaced.
    assert (tmp_path / NODE_ID_FILE).read_text() == text


@pytest.mark.parametrize("text", ["", "garbage", base64.b64encode(bytes(31)).decode(), "\xff\xfe"])
def test_corrupt_private_key(tmp_path: Path, text: str) -> None:
    load_or_create_identity(tmp_path)
    (tmp_path / PRIVATE_KEY_FILE).write_text(text)
    with pytest.raises(IdentityError, match=f"{tmp_path / PRIVATE_KEY_FILE}: corrupt"):
        load_or_create_identity(tmp_path)


def test_undecodable_file_is_reported(tmp_path: Path) -> None:
    (tmp_path / NODE_ID_FILE).write_bytes(b"\xff\xfe")
    with pytest.raises(IdentityError, match="cannot read"):
        load_or_create_identity(tmp_path)


def test_existing_files_are_kept_and_permissions_tightened(tmp_path: Path) -> None:
    state = tmp_path / "state"
    state.mkdir(mode=0o755)
    state.chmod(0o755)
    key = generate_private_key()
    (state / NODE_ID_FILE).write_text("abcXYZ123\n")
    (state / PRIVATE_KEY_FILE).write_text(key + "\n")
    (state / PRIVATE_KEY_FILE).chmod(0o644)
    ident = load_or_create_identity(state)
    assert (ident.node_id, ident.private_key) == ("abcXYZ123", key)
    assert mode(state) == 0o700
    assert mode(state / PRIVATE_KEY_FILE) == 0o600


def test_state_dir_that_is_a_file(tmp_path: Path) -> None:
    blocker = tmp_path / "state"
    blocker.write_text("")
    with pytest.raises(IdentityError, match="cannot create the state dir"):
        load_or_create_identity(blocker)


def test_create_once_keeps_the_winner_of_a_race(tmp_path: Path) -> None:
    target = tmp_path / NODE_ID_FILE
    target.write_text("winner\n")
    assert identity._create_once(target, "loser\n") == "winner\n"
    assert target.read_text() == "winner\n"
    assert [p.name for p in tmp_path.iterdir()] == [NODE_ID_FILE]
