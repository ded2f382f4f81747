"""A file's sha256, read in 1 MiB blocks: what the ONNX cache checks its entries by, and what a
board report records of the file it timed. Torch-free (the board runner uses it)."""

from __future__ import annotations

import hashlib
from pathlib import Path


def sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()
