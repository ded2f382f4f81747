"""Whether the cores a run is pinned to are busy before timing starts. Another process on a pinned
core shares its time with every sample (drift, noise, outliers follow); a short look at each core's
load beforehand says so once, and names idle cores to pin to instead.

The load of a core is the share of a short window it spent outside idle and I/O wait, from the
kernel's per-CPU counters in /proc/stat (read twice). The parent measures it while it waits, so its
own work is not counted."""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Callable

PROC_STAT = Path("/proc/stat")
WINDOW_S = 0.2  # 20 ticks of a 100 Hz clock: enough to tell a busy core (> 25 %) from an idle one
BUSY = 0.25  # a pinned core busier than this is reported
IDLE = 0.10  # a core quieter than this is offered instead
SHOWN = 8  # idle cores named at most

Counters = dict[int, tuple[int, int]]  # cpu -> (busy, total) ticks since boot


def read_counters(path: Path = PROC_STAT) -> Counters:
    """Each CPU's busy and total ticks, from /proc/stat's 'cpuN user nice system idle iowait irq
    softirq steal ...' lines (guest time is already in user); {} where it cannot be read."""
    try:
        text = path.read_text()
    except OSError:
        return {}
    counters = {}
    for line in text.splitlines():
        name, *fields = line.split() or [""]
        if not name.startswith("cpu") or not name[3:].isdigit() or len(fields) < 4:
            continue
        try:
            ticks = [int(value) for value in fields[:8]]
        except ValueError:
            continue
        idle = ticks[3] + (ticks[4] if len(ticks) > 4 else 0)  # idle + iowait
        counters[int(name[3:])] = (sum(ticks) - idle, sum(ticks))
    return counters


def core_loads(window_s: float = WINDOW_S, read: Callable[[], Counters] = read_counters,
               sleep: Callable[[float], None] = time.sleep) -> dict[int, float]:
    """Each CPU's load (0 to 1) over the next ``window_s`` seconds."""
    before = read()
    if not before:
        return {}
    sleep(window_s)
    after = read()
    loads = {}
    for cpu, (busy_before, total_before) in before.items():
        busy_after, total_after = after.get(cpu, (busy_before, total_before))
        if total_after > total_before:
            loads[cpu] = min(max((busy_after - busy_before) / (total_after - total_before), 0.0), 1.0)
    return loads


def pinned_core_load(cores: tuple[int, ...], loads: dict[int, float] | None = None,
                     allowed: list[int] | None = None) -> dict | None:
    """The record a report keeps (environment['pinned_core_load']): the window, the pinned cores,
    each one's load, those busier than BUSY, and the allowed cores quieter than IDLE; None where the loads
    cannot be read (not Linux)."""
    loads = core_loads() if loads is None else loads
    if not loads:
        return None
    allowed = sorted(os.sched_getaffinity(0)) if allowed is None else allowed
    return {"window_s": WINDOW_S, "cores": list(cores),
            "load": {str(core): round(loads[core], 3) for core in cores if core in loads},
            "busy": [core for core in cores if loads.get(core, 0.0) > BUSY],
            "idle": [core for core in allowed if core not in cores and loads.get(core, 1.0) < IDLE]}


def warning(record: object) -> str | None:
    """One line if some pinned core was busy, e.g. "core 0 was 85 % busy before timing (another
    process); idle cores then: 1 — pass --cores 1"; ``record`` as pinned_core_load made it, or
    anything (a report read from a file): None unless it holds a busy core."""
    if not isinstance(record, dict) or not isinstance(record.get("load"), dict):
        return None
    busy = [core for core in _cores(record.get("busy")) if _share(record["load"].get(str(core))) is not None]
    if not busy:
        return None
    idle = _cores(record.get("idle"))
    shares = ", ".join(f"{100 * _share(record['load'][str(core)]):.0f} %" for core in busy)
    named = ", ".join(map(str, busy))
    line = (f"core {named} was {shares} busy" if len(busy) == 1 else f"cores {named} were {shares} busy") + \
        " before timing (another process)"
    if len(idle) < len(busy):
        return f"{line}; too few idle cores to move to: stop the other process, or expect noisy timings"
    kept = [core for core in _cores(record.get("cores")) if core not in busy]
    offered = ",".join(map(str, sorted(kept + idle[:len(busy)])))
    listed = ", ".join(map(str, idle[:SHOWN])) + (f", … ({len(idle)} in all)" if len(idle) > SHOWN else "")
    return f"{line}; idle cores then: {listed} — pass --cores {offered}"


def _cores(value: object) -> list[int]:
    return [core for core in value if isinstance(core, int) and not isinstance(core, bool)] \
        if isinstance(value, list) else []


def _share(value: object) -> float | None:
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) and 0 <= value <= 1 \
        else None
