"""Checks of the options every runner shares (the CLI and the torch-free board runner), made
before anything is measured. Each failure is an OptionError naming the option; each front end
words it in its own one-line style."""

from __future__ import annotations

import errno
import math
import os
import re
import stat
import tempfile
from pathlib import Path
from typing import Callable

from flopsbench.cpu import allowed_cores
from flopsbench.output import replaces


class OptionError(ValueError):
    """A bad option value; ``option`` names it, the message says what is wrong and the fix."""

    def __init__(self, option: str, message: str):
        super().__init__(message)
        self.option = option


# Upper bounds no real use reaches; beyond them a value is a typo (or hostile) and would run for
# days or fill the disk with samples. The CLI's --help and the errors state them.
MAX_RUNS = 1_000_000  # samples per row (about 20 MB of JSON)
MAX_ROUNDS = 1_000  # each round starts a fresh worker process
MAX_SECONDS = 86_400  # a day, for any time option
MAX_LAYERS = 1_000  # identical layers stacked per operator


def parse_cores(text: str | None, threads: int) -> tuple[int, ...]:
    """'0,2-3' -> (0, 2, 3); default: the first ``threads`` cores this process may use. A range is
    checked against those cores before it is built, so '0-99999999999' costs nothing."""
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
        match = re.fullmatch(r"\s*(\d+)\s*(?:-\s*(\d+)\s*)?", part, re.ASCII)
        if not match:
            raise OptionError("--cores", f"{text[:40]!r} is not a core list; use e.g. 0 or 0,2-3 "
                                       f"(this process may use {_join(allowed)})")
        first, last = _core_number(match[1]), _core_number(match[2] or match[1])
        if last < first:
            raise OptionError("--cores", f"range {part.strip()!r} runs backwards; write it low-high, e.g. 0-3")
        if last > allowed[-1]:
            raise OptionError("--cores", f"{part.strip()[:40]!r} goes beyond the cores this process may use; "
                                       f"choose among {_join(allowed)}")
        cores.update(range(first, last + 1))
    unknown = sorted(cores - set(allowed))
    if unknown:
        raise OptionError("--cores", f"core(s) {_join(unknown)} not available to this process; "
                                   f"choose among {_join(allowed)}")
    if threads > len(cores):
        raise OptionError("--threads", f"{threads} threads need at least as many cores, but --cores gives "
                                     f"{len(cores)}; add cores or lower --threads")
    return tuple(sorted(cores))


def _core_number(digits: str) -> int:
    # Longer numbers are beyond any machine (and int() refuses very long ones): compare, never build.
    return int(digits) if len(digits) <= 18 else 10**18


def _join(cores: list[int]) -> str:
    """[0, 1, 2, 3, 6] -> '0-3,6'."""
    runs: list[list[int]] = []
    for core in cores:
        if runs and core == runs[-1][1] + 1:
            runs[-1][1] = core
        else:
            runs.append([core, core])
    return ",".join(str(a) if a == b else f"{a}-{b}" for a, b in runs)


def check_range(value: int, option: str, low: int, high: int) -> None:
    if not low <= value <= high:
        raise OptionError(option, f"{value} is out of range; use {low:,} to {high:,}")


def check_seconds(value: float, option: str, *, positive: bool = False) -> None:
    """A time option: finite (NaN and inf would end up as non-standard JSON), at most a day."""
    low_ok = value > 0 if positive else value >= 0
    if not (math.isfinite(value) and low_ok and value <= MAX_SECONDS):
        bounds = f"more than 0 and at most {MAX_SECONDS}" if positive else f"0 to {MAX_SECONDS}"
        raise OptionError(option, f"{value} is not a usable number of seconds; use {bounds} (a day)")


def check_budget(min_time: float, min_runs: int, max_runs: int, runs: int | None, warmup: float,
                 rounds: int, stop_ci: float = 0.0) -> None:
    if runs is not None:
        check_range(runs, "--runs", 1, MAX_RUNS)
    check_seconds(warmup, "--warmup")
    check_seconds(min_time, "--min-time")
    check_range(min_runs, "--min-runs", 1, MAX_RUNS)
    check_range(max_runs, "--max-runs", 1, MAX_RUNS)
    if max_runs < min_runs:
        raise OptionError("--max-runs", f"need --min-runs ({min_runs}) <= --max-runs ({max_runs})")
    check_range(rounds, "--rounds", 1, MAX_ROUNDS)
    if not 0 <= stop_ci < 1:  # also refuses nan
        raise OptionError("--stop-ci", f"{stop_ci} must be a fraction in [0, 1), e.g. 0.01 for +-1 %; 0 turns it off")


def available_memory() -> int | None:
    """Bytes of memory this process could still get: the kernel's MemAvailable estimate (free pages
    where there is none); None where neither is known. (A container's cgroup limit is not read:
    its usage counts page cache the kernel would reclaim, and refusing a case that fits is worse
    than letting one fail.)"""
    try:
        with open("/proc/meminfo") as meminfo:
            return next(int(line.split()[1]) * 1024 for line in meminfo if line.startswith("MemAvailable:"))
    except (OSError, StopIteration, ValueError, IndexError):
        pass
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return None


def check_memory(bytes_at: Callable[[int], int], batch: int, option: str, what: str, fix: str = "") -> None:
    """Refuse a case before it is built when ``bytes_at(batch)``, the least memory it needs at a
    batch, exceeds what is available. Blames --batch when one image would fit, else ``option``
    (the option that sets the case's size, e.g. --shape; ``fix`` may name others that do too)."""
    available = available_memory()
    needed = bytes_at(batch)
    if available is None or needed <= available:
        return
    if batch > 1 and bytes_at(1) <= available:
        option, fix = "--batch", ""
    raise OptionError(option, f"{what}, batch {batch}, needs at least {_bytes(needed)} of memory and "
                              f"{_bytes(available)} is available; use a smaller {fix or option}")


def _bytes(n: int) -> str:
    """1234567 -> '1.23 MB' (decimal units)."""
    for factor, unit in ((10**12, "TB"), (10**9, "GB"), (10**6, "MB")):
        if n >= factor:
            value = n / factor
            return f"{value:,.0f} {unit}" if value >= 1000 else f"{value:.3g} {unit}"
    return f"{n} B"


SEED_LIMIT = 2 ** 32  # numpy's default_rng takes any seed >= 0, torch.manual_seed up to 2**64 - 1: both take these


def check_seed(seed: int) -> None:
    if not 0 <= seed < SEED_LIMIT:
        raise OptionError("--seed", f"{seed} is out of range; give 0 <= seed < 2**32, e.g. --seed 0")


MAX_JSON_DEPTH = 64  # a report nests about 6 deep; json.dumps recurses once per level, and fails near 1,000


def too_deep(data, limit: int = MAX_JSON_DEPTH) -> str | None:
    """The path ('rows[0].runtime...') of an item of parsed JSON nested more than ``limit`` levels
    deep, or None. Iterative, so any depth json.loads returns is safe to check."""
    stack = [(data, "", 0)]
    while stack:
        value, path, depth = stack.pop()
        if depth > limit:
            return path[:80] + "..."
        items = value.items() if isinstance(value, dict) else enumerate(value) if isinstance(value, list) else ()
        stack.extend((item, json_path(path, key), depth + 1) for key, item in items)
    return None


def json_path(path: str, key: str | int) -> str:
    """The path of ``key`` inside the item at ``path``, on one line whatever the key holds:
    ('rows', 0) -> 'rows[0]', then 'rows[0].flops', or "rows[0]['a\\nb']" for a key that is no name."""
    if isinstance(key, int):
        return f"{path}[{key}]"
    if key.isidentifier():
        return f"{path}.{key}" if path else key
    return f"{path}[{key[:40]!r}]"


def check_writable(output: str | None) -> None:
    """Fail before measuring if the output file cannot be written ('-' is stdout), by the rules
    flopsbench.output writes it by, and without opening it (a FIFO's open waits for a reader): a
    regular or new file needs a folder where its replacement can be made, and an existing one its
    own write permission too; a device, a FIFO or what a symlink points to, write permission."""
    if output is None or output == "-":
        return
    path = Path(output)
    try:
        mode = path.stat().st_mode  # what a symlink points to
    except FileNotFoundError:
        mode = None  # a new file (or a symlink to one): made in its folder
    except OSError as exc:
        raise _unwritable(output, exc.strerror) from None
    if mode is not None and stat.S_ISDIR(mode):
        raise _unwritable(output, os.strerror(errno.EISDIR))
    if mode is not None and stat.S_ISSOCK(mode):
        raise _unwritable(output, "it is a socket")
    if mode is not None and not os.access(path, os.W_OK):
        raise _unwritable(output, os.strerror(errno.EACCES))
    if mode is None or replaces(path):
        try:  # the replacement is made beside the file
            fd, probe = tempfile.mkstemp(dir=Path(os.path.realpath(path)).parent, prefix=".flopsbench-write-test-")
            os.close(fd)
            os.unlink(probe)
        except OSError as exc:
            raise _unwritable(output, exc.strerror) from None


def _unwritable(output: str, why: str | None) -> OptionError:
    return OptionError("--output", f"cannot write {output} ({why}); choose a writable path or '-' for stdout")


def check_folder(folder: Path, option: str, fix: str) -> None:
    """Fail before measuring if files cannot be written into ``folder`` (made if missing)."""
    try:
        folder.mkdir(parents=True, exist_ok=True)
        probe = folder / f".flopsbench-write-test-{os.getpid()}"
        probe.touch()
        probe.unlink()
    except OSError as exc:
        raise OptionError(option, f"cannot write into {folder} ({exc.strerror}); {fix}") from None
