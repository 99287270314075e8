"""Tests for bot.pseudonym: keyed, stable pseudonyms for platform user ids."""

from __future__ import annotations

import re

import pytest

from bot.pseudonym import Pseudonymizer


def test_same_person_gets_the_same_pseudonym() -> None:
    first = Pseudonymizer("key-one")("telegram", "12345")
    second = Pseudonymizer("key-one")("telegram", "12345")

    assert first == second


def test_pseudonym_is_32_hex_characters() -> None:
    pseudonym = Pseudonymizer("key-one")("telegram", "12345")

    assert re.fullmatch(r"[0-9a-f]{32}", pseudonym) is not None


def test_pseudonym_does_not_contain_the_user_id() -> None:
    pseudonym = Pseudonymizer("key-one")("telegram", "123456789")

    assert "123456789" not in pseudonym


def test_pseudonym_differs_per_key() -> None:
    assert Pseudonymizer("key-one")("telegram", "12345") != Pseudonymizer("key-two")(
        "telegram", "12345"
    )


def test_pseudonym_differs_per_platform() -> None:
    pseudonymize = Pseudonymizer("key-one")

    assert pseudonymize("telegram", "12345") != pseudonymize("discord", "12345")


def test_pseudonym_differs_per_user() -> None:
    pseudonymize = Pseudonymizer("key-one")

    assert pseudonymize("telegram", "12345") != pseudonymize("telegram", "12346")


def test_many_users_get_distinct_pseudonyms() -> None:
    pseudonymize = Pseudonymizer("key-one")

    pseudonyms = {pseudonymize("telegram", str(user)) for user in range(1000)}

    assert len(pseudonyms) == 1000


def test_empty_key_is_refused() -> None:
    with pytest.raises(ValueError) as excinfo:
        Pseudonymizer("")

    assert str(excinfo.value) == "the pseudonym key must not be empty"


def test_repr_hides_the_key() -> None:
    pseudonymize = Pseudonymizer("very-secret-key")

    assert repr(pseudonymize) == "Pseudonymizer(key='**********')"
    assert "very-secret-key" not in str(pseudonymize)
