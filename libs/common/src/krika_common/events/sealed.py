"""Secrets an event must carry to one consumer, sealed for it (JWE: ECDH-ES, A256GCM).

identity's one-time link tokens travel to notify in events, and events sit in the outbox, the
broker and any dead-letter queue. The producer seals the secret with the consumer's public key
(P-256); only the consumer's private key opens it, so none of those places holds a usable
token. `load_key` reads a PEM: a private key (the consumer) or just its public half (producer).
"""

from __future__ import annotations

from pathlib import Path

from joserfc import jwe
from joserfc.errors import JoseError
from joserfc.jwk import ECKey

_HEADER = {"alg": "ECDH-ES", "enc": "A256GCM"}


class SealBroken(ValueError):
    """The sealed value is not for this key, or was altered."""


def load_key(path: Path) -> ECKey:
    return ECKey.import_key(path.read_bytes())


def new_key() -> ECKey:
    return ECKey.generate_key("P-256")


def seal(secret: str, key: ECKey) -> str:
    return jwe.encrypt_compact(_HEADER, secret.encode(), key)


def unseal(sealed: str, key: ECKey) -> str:
    try:
        plaintext = jwe.decrypt_compact(sealed, key, algorithms=[_HEADER["alg"], _HEADER["enc"]])
    except (JoseError, ValueError) as exc:
        raise SealBroken(str(exc)) from exc
    return (plaintext.plaintext or b"").decode()
