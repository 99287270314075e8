"""Keyed pseudonyms for platform user ids: stable per person, useless without the key."""

from __future__ import annotations

import hashlib
import hmac


class Pseudonymizer:
    """Maps (platform, user id) to a stable pseudonym with HMAC-SHA256.

    The same person keeps the same pseudonym across channels of one platform, so a
    volunteer sees earlier cases of "this author" without ever seeing who they are.
    """

    def __init__(self, key: str) -> None:
        if not key:
            raise ValueError("the pseudonym key must not be empty")
        self._key = key.encode("utf-8")

    def __call__(self, platform: str, user_id: str) -> str:
        mac = hmac.new(self._key, f"{platform}:{user_id}".encode(), hashlib.sha256)
        return mac.hexdigest()[:32]

    def __repr__(self) -> str:
        return "Pseudonymizer(key='**********')"
