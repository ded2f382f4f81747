"""A TOML file a person wrote (an inventory, a sweep plan), read with one-line errors. Torch-free."""

from __future__ import annotations

import sys
from pathlib import Path

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover -- Python 3.10
    import tomli as tomllib

MAX_BYTES = 1 << 20  # such a file is a few hundred lines


def read_toml(path: Path, error: type[Exception], missing: str, max_bytes: int = MAX_BYTES) -> dict:
    """``path``'s TOML; any failure is ``error`` with one line naming the file (``missing``: what to do
    when there is none)."""
    try:
        if path.stat().st_size > max_bytes:
            raise error(f"{path}: larger than {max_bytes >> 20} MiB, more than such a file holds")
        return tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise error(f"{path}: no such file; {missing}") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise error(f"{path}: cannot be read ({type(exc).__name__}: {exc})") from None
    except tomllib.TOMLDecodeError as exc:
        raise error(f"{path}: not TOML ({exc})") from None
