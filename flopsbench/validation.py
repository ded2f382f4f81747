"""Checks of the options every runner shares (the CLI and the torch-free board runner), made
before anything is measured. Each failure is an OptionError naming the option; each front end
words it in its own one-line style."""

from __future__ import annotations

import re
from pathlib import Path

from flopsbench.cpu import allowed_cores


class OptionError(ValueError):
    """A bad option value; ``option`` names it, the message says what is wrong and the fix."""

    def __init__(self, option: str, message: str):
        super().__init__(message)
        self.option = option


def parse_cores(text: str | None, threads: int) -> tuple[int, ...]:
    """'0,2-3' -> (0, 2, 3); default: the first ``threads`` cores this process may use."""
    allowed = allowed_cores()
    if threads < 1:
        raise OptionError("--threads", f"{threads} must be at least 1")
    if threads > len(allowed):
        raise OptionError("--threads", f"{threads} is more than the {len(allowed)} core(s) this process may use "
                                     f"({_join(allowed)}); use --threads {len(allowed)} or fewer")
    if text is None:
        return tuple(allowed[:threads])
    cores: set[int] = set()
    for part in text.split(","):
        match = re.fullmatch(r"\s*(\d+)\s*(?:-\s*(\d+)\s*)?", part)
        if not match:
            raise OptionError("--cores", f"{text!r} is not a core list; use e.g. 0 or 0,2-3")
        first, last = int(match[1]), int(match[2] or match[1])
        if last < first:
            raise OptionError("--cores", f"range {part.strip()!r} runs backwards; write it low-high, e.g. 0-3")
        cores.update(range(first, last + 1))
    unknown = sorted(cores - set(allowed))
    if unknown:
        raise OptionError("--cores", f"core(s) {_join(unknown)} not available to this process; "
                                   f"choose among {_join(allowed)}")
    if threads > len(cores):
        raise OptionError("--threads", f"{threads} threads need at least as many cores, but --cores gives "
                                     f"{len(cores)}; add cores or lower --threads")
    return tuple(sorted(cores))


def _join(cores: list[int]) -> str:
    return ",".join(str(c) for c in cores)


def check_budget(min_time: float, min_runs: int, max_runs: int, runs: int | None, warmup: float,
                 rounds: int, stop_ci: float = 0.0) -> None:
    if runs is not None and runs < 1:
        raise OptionError("--runs", f"{runs} must be at least 1")
    if min_time < 0 or warmup < 0:
        raise OptionError("--min-time" if min_time < 0 else "--warmup", "must not be negative")
    if min_runs < 1 or max_runs < min_runs:
        raise OptionError("--max-runs" if min_runs >= 1 else "--min-runs",
                          f"need 1 <= --min-runs ({min_runs}) <= --max-runs ({max_runs})")
    if rounds < 1:
        raise OptionError("--rounds", f"{rounds} must be a positive integer")
    if not 0 <= stop_ci < 1:  # also refuses nan
        raise OptionError("--stop-ci", f"{stop_ci} must be a fraction in [0, 1), e.g. 0.01 for +-1 %; 0 turns it off")


def check_writable(output: str | None) -> None:
    """Fail before measuring if the output file cannot be written ('-' is stdout)."""
    if output is None or output == "-":
        return
    path = Path(output)
    existed = path.exists()
    try:
        with open(path, "a"):
            pass
    except OSError as exc:
        raise OptionError("--output", f"cannot write {output} ({exc.strerror}); choose a writable path "
                                      "or '-' for stdout") from None
    if not existed:
        path.unlink()
