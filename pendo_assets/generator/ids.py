"""Deterministic randomness and Pendo-shaped identifiers."""

from __future__ import annotations

import base64
import hashlib
import random

PENDO_ID_LENGTH = 27
URL_SAFE_ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"


def _digest(parts: tuple[object, ...], size: int) -> bytes:
    text = "\x1f".join(str(part) for part in parts)
    return hashlib.blake2b(text.encode("utf-8"), digest_size=size).digest()


def derived_rng(*parts: object) -> random.Random:
    """A random stream that depends only on `parts`, never on process state or hash salting."""
    return random.Random(int.from_bytes(_digest(parts, 16), "big"))


def derived_fraction(*parts: object) -> float:
    return int.from_bytes(_digest(parts, 8), "big") / 2**64


def pendo_id(rng: random.Random, first_char: str | None = None) -> str:
    """27 URL-safe base64 characters, the shape of Pendo page, feature, guide and event ids."""
    raw = rng.getrandbits(160).to_bytes(20, "big")
    encoded = base64.urlsafe_b64encode(raw).decode("ascii").rstrip("=")
    return encoded if first_char is None else first_char + encoded[1:]


def url_safe_token(rng: random.Random, length: int) -> str:
    return "".join(rng.choice(URL_SAFE_ALPHABET) for _ in range(length))


def export_folder_name(*parts: object) -> str:
    return _digest(parts, 16).hex()


def sync_marker(*parts: object) -> bytes:
    """Avro sync markers are normally random; deriving them keeps files byte-identical across runs."""
    return _digest(parts, 16)
