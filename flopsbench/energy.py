"""Energy per inference, where the machine counts it: cumulative energy counters read at both ends
of a window of calls (MLPerf Power's way: energy over the run / the inferences in it).

Two counters are known: a GPU's, NVML's total energy since the driver loaded
(``nvmlDeviceGetTotalEnergyConsumption``, mJ, Volta and later; see ``flopsbench.cuda``), and a
CPU's, RAPL's package counters through Linux powercap (``/sys/class/powercap/intel-rapl:N/
energy_uj``, µJ, wrapping to 0 past ``max_energy_range_uj``; root-only on most systems since
Linux 5.10). A counter moves in steps (NVML's every few tens of ms), so a window lasts at least
``MIN_WINDOW_S``: the round's samples, then untimed calls until it has. Where nothing can be
read, a ``Meter`` holds the reason instead, and the report says it.

Torch-free: the onnxruntime worker and the board use it."""

from __future__ import annotations

import contextlib
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterator

POWERCAP = Path("/sys/class/powercap")
MIN_WINDOW_S = 1.0  # a counter updated every ~20-100 ms is off by a step at each end: ≤ 10 % over a second


@dataclass(frozen=True)
class Counter:
    """One cumulative counter: ``read()`` is its value now in joules; it wraps to 0 past ``wraps_at_j``
    (None: never within a window)."""

    name: str
    read: Callable[[], float]
    wraps_at_j: float | None = None

    def used_j(self, start: float, end: float) -> float:
        """Joules between two readings, across one wrap-around (a window is far shorter than a wrap:
        RAPL's range is ~262 kJ, minutes at full power)."""
        if end < start and self.wraps_at_j is not None:
            return end + self.wraps_at_j - start
        return end - start


@dataclass
class Meter:
    """Counters read together (e.g. every CPU package); ``source`` says what they count. With no
    counter, ``reason`` says why nothing is measured."""

    source: str = ""
    counters: list[Counter] = field(default_factory=list)
    reason: str | None = None

    def read(self) -> list[float]:
        return [counter.read() for counter in self.counters]

    def used_j(self, start: list[float], end: list[float]) -> float:
        return sum(counter.used_j(a, b) for counter, a, b in zip(self.counters, start, end))


def unreadable(reason: str) -> Meter:
    return Meter(reason=reason)


Started = tuple[list[float], float]  # a window's first reading, and the clock's time then


def start_window(meter: Meter, clock: Callable[[], float] = time.perf_counter) -> Started | str:
    """A window opened now: (the counters' reading, the clock's time), or why the meter cannot be read."""
    if meter.reason is not None:
        return meter.reason
    try:
        return meter.read(), clock()
    except Exception as exc:  # noqa: BLE001 -- an unreadable counter is a reason, not a failed row
        return f"energy not measured: {meter.source}: {type(exc).__name__}: {exc}"


def finish_window(meter: Meter, started: Started, calls: int, call_once: Callable[[], int],
                  clock: Callable[[], float] = time.perf_counter, min_window_s: float = MIN_WINDOW_S) -> dict:
    """The round's energy record of a window ``started`` before ``calls`` inferences: untimed
    ``call_once()`` (returning how many inferences it ran) go on until the window lasts
    ``min_window_s``, then the counters are read again. ``joules`` over ``calls`` is the energy
    per inference."""
    start, t0 = started
    while clock() - t0 < min_window_s:
        calls += call_once()
    try:
        end = meter.read()
    except Exception as exc:  # noqa: BLE001
        return {"unavailable": f"energy not measured: {meter.source}: {type(exc).__name__}: {exc}"}
    return {"source": meter.source, "joules": meter.used_j(start, end), "window_s": clock() - t0, "calls": calls}


# --- RAPL through powercap ---------------------------------------------------------------------------

def _rapl_counter(zone: Path, read: Callable[[Path], str]) -> Counter:
    """A package zone's counter, read once here so that a counter that cannot be read says so now."""
    wraps_at = int(read(zone / "max_energy_range_uj")) / 1e6
    counter = Counter(zone.name, lambda: int(read(zone / "energy_uj")) / 1e6, wraps_at)
    counter.read()
    return counter


@contextlib.contextmanager
def rapl_meter(root: Path = POWERCAP, read: Callable[[Path], str] = Path.read_text) -> Iterator[Meter]:
    """Every CPU package's RAPL counter (``intel-rapl:N`` zones named ``package-*``; AMD's are
    there too, under the same driver), read by ``read``. DRAM is a zone of its own and is not
    counted; "psys" is the whole platform and would count the packages twice. A package is the
    whole socket: its other cores' work and idle power are in it too."""
    zones = sorted(path for path in root.glob("intel-rapl:*") if path.name.count(":") == 1)
    packages = []
    for zone in zones:
        try:
            if read(zone / "name").strip().startswith("package"):
                packages.append(zone)
        except OSError:
            continue
    if not packages:
        what = "no RAPL package zone" if zones else "no RAPL zones"
        yield unreadable(f"CPU energy not measured: {root} has {what} (not an x86 CPU with RAPL, or a virtual "
                         "machine or container that hides it)")
        return
    try:
        counters = [_rapl_counter(zone, read) for zone in packages]
    except PermissionError as exc:
        yield unreadable(f"CPU energy not measured: no permission to read {exc.filename} (RAPL counters are "
                         "root-only on most Linux systems since 5.10; a root can make them readable with "
                         "chmod o+r .../energy_uj)")
        return
    except (OSError, ValueError) as exc:
        yield unreadable(f"CPU energy not measured: RAPL unreadable ({type(exc).__name__}: {exc})")
        return
    names = ", ".join(zone.name for zone in packages)
    yield Meter(f"RAPL package energy via powercap ({names})", counters)


def with_round(summary: dict | None, record: dict) -> dict:
    """A row's ``energy`` with one more round's record (checked by the parent): the measured
    rounds' joules, seconds and inferences, their sums, the energy per inference (one call: the
    whole batch) and the mean power; and the first reason given where a round measured none."""
    summary = summary or {"rounds": []}
    rounds = summary["rounds"] + ([{key: record[key] for key in ("joules", "window_s", "calls")}]
                                  if "joules" in record else [])
    updated: dict = {"rounds": rounds}
    if rounds:
        joules, seconds = sum(r["joules"] for r in rounds), sum(r["window_s"] for r in rounds)
        calls = sum(r["calls"] for r in rounds)
        updated.update(source=summary.get("source") or record.get("source"), joules=joules, window_s=seconds,
                       calls=calls, j_per_call=joules / calls if calls else None,
                       mean_power_w=joules / seconds if seconds else None)
    if summary.get("unavailable") or record.get("unavailable"):
        updated["unavailable"] = summary.get("unavailable") or record["unavailable"]
    return updated
