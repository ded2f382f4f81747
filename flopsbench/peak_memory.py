"""A case's peak memory in its worker: how far the process's resident set rose above its size just
before the case was built, while it was built, warmed up and timed (a GPU backend adds torch's
allocator peaks, see backends.torch_cuda).

The peak is Linux's high-water mark of the resident set (``VmHWM`` in /proc/self/status), reset
before the case is built by writing "5" to /proc/self/clear_refs (Linux 4.0 and later), less the
resident set then (``VmRSS``). ``resource.getrusage``'s ``ru_maxrss`` is the same mark over the
process's whole life, which an earlier case of the same worker may have set; psutil reads the
resident set but neither reads nor resets the mark. Where the reset is refused, a mark that rose
during the case is still the case's; one that did not is unknown, and the record says so.

What it cannot see: pages the case reuses that the process already held. On the CPU each case
runs in a process of its own (flopsbench.case_process), which held only the imports; a GPU
worker's case that is not its first may read low (heap an earlier case freed). onnxruntime's Python API reports
no peak memory of a session: its rows are measured the same way, as the worker's resident set.

Torch-free: the onnxruntime worker uses it."""

from __future__ import annotations

from pathlib import Path

FIGURES = ("host_peak_bytes", "gpu_peak_allocated_bytes", "gpu_peak_reserved_bytes")  # a record's byte counts
PROC_STATUS = Path("/proc/self/status")
CLEAR_REFS = Path("/proc/self/clear_refs")
HOST_METHOD = ("host: the worker's peak resident set (VmHWM, reset via /proc/self/clear_refs before the build) "
               "while the case was built and timed, less its resident set (VmRSS) before the build")


def _resident_bytes(status: Path) -> dict[str, int]:
    """VmHWM and VmRSS of a /proc/PID/status file, in bytes (the kernel writes kB)."""
    values = {}
    for line in status.read_text().splitlines():
        key, _, rest = line.partition(":")
        if key in ("VmHWM", "VmRSS"):
            values[key] = int(rest.split()[0]) * 1024
    if len(values) < 2:
        raise ValueError(f"{status} has no VmHWM or VmRSS")
    return values


class HostPeak:
    """``start()`` before the case is built, ``stop()`` after its round: the record of how far the
    resident set rose. Never raises: what it cannot read, it says."""

    def __init__(self, status: Path = PROC_STATUS, clear_refs: Path = CLEAR_REFS):
        self.status, self.clear_refs = status, clear_refs
        self.before: dict[str, int] | None = None
        self.reset_refused: str | None = None
        self.failure: str | None = None

    def start(self) -> None:
        try:
            self.clear_refs.write_text("5")  # resets VmHWM to the current resident set
        except OSError as exc:
            self.reset_refused = f"{type(exc).__name__}: {exc}"
        try:
            self.before = _resident_bytes(self.status)
        except (OSError, ValueError) as exc:
            self.failure = f"host peak memory not measured: {type(exc).__name__}: {exc} (not Linux?)"

    def stop(self) -> dict:
        if self.before is None:
            return {"unavailable": self.failure or "host peak memory not measured: start() was not called"}
        try:
            after = _resident_bytes(self.status)
        except (OSError, ValueError) as exc:
            return {"unavailable": f"host peak memory not measured: {type(exc).__name__}: {exc}"}
        if self.reset_refused and after["VmHWM"] <= self.before["VmHWM"]:
            return {"unavailable": "host peak memory not measured: the worker's peak before the case was higher, "
                                   f"and it could not be reset ({self.reset_refused})"}
        method = HOST_METHOD + (" (reset refused; the peak rose during the case)" if self.reset_refused else "")
        return {"host_peak_bytes": max(0, after["VmHWM"] - self.before["VmRSS"]), "method": method}


def with_round(summary: dict | None, record: dict) -> dict:
    """A row's ``peak_memory`` with one more round's record (checked by the parent): the rounds'
    figures, each figure's largest over them (a peak is what must fit), how they were measured,
    and the first reason given for a missing one."""
    summary = summary or {"rounds": []}
    rounds = [*summary["rounds"], {key: record[key] for key in FIGURES if key in record}]
    updated: dict = {"rounds": rounds}
    for key in FIGURES:
        values = [figures[key] for figures in rounds if key in figures]
        if values:
            updated[key] = max(values)
    for key in ("method", "unavailable"):
        if summary.get(key) or record.get(key):
            updated[key] = summary.get(key) or record[key]
    return updated
