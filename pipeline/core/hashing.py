"""Content hashes (data versions, package metadata) and stable seeds (takeup draws)."""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np

_CHUNK = 1 << 20


def sha256_file(path: str | Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(_CHUNK):
            h.update(chunk)
    return h.hexdigest()


def sha256_text(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def sha256_array(arr: np.ndarray) -> str:
    """Dtype, shape and bytes; hashed through a memoryview, so X is never copied."""
    arr = np.ascontiguousarray(arr)
    h = hashlib.sha256()
    h.update(str(arr.dtype).encode())
    h.update(str(arr.shape).encode())
    h.update(memoryview(arr.reshape(-1)).cast("B"))
    return h.hexdigest()


def stable_seed(*parts: object) -> int:
    """A 64-bit seed from the parts' text; the same in every process (unlike `hash()`)."""
    text = "\x1f".join(str(p) for p in parts)
    return int.from_bytes(hashlib.sha256(text.encode()).digest()[:8], "little")
