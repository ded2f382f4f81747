"""Which view an output gets: --format where given, else the one the -o FILE's extension names
(out.csv is CSV, not a box-drawn table), else the command's default."""

from __future__ import annotations

from pathlib import PurePath

from flopsbench.validation import OptionError

EXTENSIONS = {".md": "md", ".markdown": "md", ".csv": "csv", ".tex": "latex", ".json": "json", ".txt": "table"}


def view_format(fmt: str | None, output: str | None, default: str = "table") -> str:
    """``fmt`` if given; else the format of ``output``'s extension (EXTENSIONS); ``default`` for
    stdout ('-' or none) and for a name without one (/dev/stdout, a FIFO). An extension of no
    view is an OptionError naming -o and --format."""
    if fmt is not None:
        return fmt
    if output is None or output == "-":
        return default
    suffix = PurePath(output).suffix
    if not suffix:
        return default
    if suffix.lower() not in EXTENSIONS:
        known = ", ".join(EXTENSIONS)
        raise OptionError("--output", f"{PurePath(output).name[:60]!r}: no view is written as {suffix[:20]!r}; name "
                                      f"the file {known} or give --format")
    return EXTENSIONS[suffix.lower()]
