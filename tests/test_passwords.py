"""Tests for bot.passwords: argon2 password hashes and API tokens."""

from __future__ import annotations

import re

from bot.passwords import hash_password, new_token, token_hash, verify_password


def test_hash_and_verify_roundtrip() -> None:
    stored = hash_password("correct horse battery staple")

    assert verify_password(stored, "correct horse battery staple") is True


def test_hash_is_argon2id_and_does_not_contain_the_password() -> None:
    stored = hash_password("correct horse battery staple")

    assert stored.startswith("$argon2id$")
    assert "correct horse" not in stored


def test_hashes_are_salted() -> None:
    assert hash_password("same password") != hash_password("same password")


def test_wrong_password_is_refused() -> None:
    stored = hash_password("correct horse battery staple")

    assert verify_password(stored, "Correct horse battery staple") is False
    assert verify_password(stored, "") is False


def test_missing_hash_is_refused() -> None:
    assert verify_password(None, "anything") is False


def test_missing_hash_is_refused_even_for_the_dummy_password() -> None:
    # The dummy hash only equalises timing; it must never let anyone in.
    assert verify_password(None, "peerdesk-dummy-password") is False
    assert verify_password("", "peerdesk-dummy-password") is False


def test_garbage_hash_is_refused() -> None:
    assert verify_password("not-a-hash", "anything") is False
    assert verify_password("$argon2id$v=19$garbage", "anything") is False


def test_token_format() -> None:
    token = new_token()

    assert re.fullmatch(r"pd_[A-Za-z0-9_-]{43}", token) is not None


def test_tokens_are_different() -> None:
    tokens = {new_token() for _ in range(100)}

    assert len(tokens) == 100


def test_token_hash_is_sha256_hex() -> None:
    assert token_hash("abc") == "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"


def test_token_hash_is_deterministic() -> None:
    token = new_token()

    assert token_hash(token) == token_hash(token)


def test_different_tokens_have_different_hashes() -> None:
    first, second = new_token(), new_token()

    assert token_hash(first) != token_hash(second)
    assert token_hash(first) != first
