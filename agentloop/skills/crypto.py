"""Encryption at rest for skill secrets (and the runs' secret env), with key rotation.

Keys come from settings.FERNET_KEYS (the AGENTLOOP_FERNET_KEYS environment
variable, comma separated). The first key encrypts; every key decrypts, so a
new key can be put first while old ciphertexts still read. `manage.py
rotate_secrets` then re-encrypts everything under the first key, after which
the old keys can be dropped.
"""

from __future__ import annotations

import json

from cryptography.fernet import Fernet, InvalidToken, MultiFernet
from django.conf import settings


class SecretsUnreadable(Exception):
    """A ciphertext none of the configured keys can decrypt (key dropped or data damaged)."""


def fernet() -> MultiFernet:
    # Built on each call (it is cheap) so tests and rotations see the current settings.
    return MultiFernet([Fernet(key.encode()) for key in settings.FERNET_KEYS])


def encrypt_json(values: dict[str, str]) -> str:
    if not values:
        return ""
    return fernet().encrypt(json.dumps(values, sort_keys=True).encode()).decode()


def decrypt_json(ciphertext: str) -> dict[str, str]:
    if not ciphertext:
        return {}
    try:
        return json.loads(fernet().decrypt(ciphertext.encode()))
    except InvalidToken:
        raise SecretsUnreadable(
            "The stored secrets cannot be decrypted with the configured keys "
            "(AGENTLOOP_FERNET_KEYS)."
        ) from None


def rotate(ciphertext: str) -> str:
    """The same plaintext encrypted under the current (first) key."""
    if not ciphertext:
        return ""
    try:
        return fernet().rotate(ciphertext.encode()).decode()
    except InvalidToken:
        raise SecretsUnreadable("cannot be decrypted with any configured key") from None
