"""The environment a report was measured in: machine, CPU and board, libraries, tool version and commit.
torch and onnxruntime details are recorded when they are installed (a board may have neither
torch nor git)."""

from __future__ import annotations

import os
import platform
import socket
import subprocess
from importlib import metadata
from pathlib import Path
from typing import Sequence

import flopsbench
from flopsbench.cpu import allowed_cores

LIBRARIES = ("torch", "fvcore", "numpy", "onnx", "onnxruntime", "timm", "torchvision")


PROC = Path("/proc")
SYS = Path("/sys")

# arm64 /proc/cpuinfo names no model: it gives each core's MIDR implementer and part numbers.
# Names as in Linux's arch/arm64/include/asm/cputype.h. ARM Ltd's parts are named bare ("Cortex-A72").
ARM_IMPLEMENTERS: dict[int, tuple[str, dict[int, str]]] = {
    0x41: ("ARM", {
        0xd03: "Cortex-A53", 0xd04: "Cortex-A35", 0xd05: "Cortex-A55", 0xd07: "Cortex-A57", 0xd08: "Cortex-A72",
        0xd09: "Cortex-A73", 0xd0a: "Cortex-A75", 0xd0b: "Cortex-A76", 0xd0c: "Neoverse-N1", 0xd0d: "Cortex-A77",
        0xd0e: "Cortex-A76AE", 0xd40: "Neoverse-V1", 0xd41: "Cortex-A78", 0xd42: "Cortex-A78AE", 0xd44: "Cortex-X1",
        0xd46: "Cortex-A510", 0xd47: "Cortex-A710", 0xd48: "Cortex-X2", 0xd49: "Neoverse-N2", 0xd4b: "Cortex-A78C",
        0xd4c: "Cortex-X1C", 0xd4d: "Cortex-A715", 0xd4e: "Cortex-X3", 0xd4f: "Neoverse-V2", 0xd80: "Cortex-A520",
        0xd81: "Cortex-A720", 0xd82: "Cortex-X4", 0xd83: "Neoverse-V3AE", 0xd84: "Neoverse-V3", 0xd85: "Cortex-X925",
        0xd87: "Cortex-A725", 0xd89: "Cortex-A720AE", 0xd8e: "Neoverse-N3"}),
    0x42: ("Broadcom", {0x100: "Broadcom Brahma-B53", 0x516: "Broadcom Vulcan"}),
    0x43: ("Cavium", {0x0a1: "Cavium ThunderX", 0x0af: "Cavium ThunderX2"}),
    0x46: ("Fujitsu", {0x001: "Fujitsu A64FX"}),
    0x48: ("HiSilicon", {0xd01: "HiSilicon TaiShan v110", 0xd02: "HiSilicon HIP09"}),
    0x4e: ("NVIDIA", {0x003: "NVIDIA Denver", 0x004: "NVIDIA Carmel", 0x010: "NVIDIA Olympus"}),
    0x50: ("APM", {0x000: "APM X-Gene"}),
    0x51: ("Qualcomm", {
        0x001: "Qualcomm Oryon", 0x200: "Qualcomm Kryo", 0x800: "Qualcomm Kryo 2XX Gold",
        0x801: "Qualcomm Kryo 2XX Silver", 0x802: "Qualcomm Kryo 3XX Gold", 0x803: "Qualcomm Kryo 3XX Silver",
        0x804: "Qualcomm Kryo 4XX Gold", 0x805: "Qualcomm Kryo 4XX Silver", 0xc00: "Qualcomm Falkor"}),
    0x61: ("Apple", {
        0x022: "Apple M1 Icestorm", 0x023: "Apple M1 Firestorm", 0x024: "Apple M1 Pro Icestorm",
        0x025: "Apple M1 Pro Firestorm", 0x028: "Apple M1 Max Icestorm", 0x029: "Apple M1 Max Firestorm",
        0x032: "Apple M2 Blizzard", 0x033: "Apple M2 Avalanche", 0x034: "Apple M2 Pro Blizzard",
        0x035: "Apple M2 Pro Avalanche", 0x038: "Apple M2 Max Blizzard", 0x039: "Apple M2 Max Avalanche"}),
    0x6d: ("Microsoft", {0xd49: "Microsoft Azure Cobalt 100"}),
    0xc0: ("Ampere", {0xac3: "Ampere AmpereOne", 0xac4: "Ampere AmpereOne A"}),
}
# Thermal zone types that measure the CPU/SoC die: "cpu-thermal" (Pi), "soc-thermal" (Rockchip),
# "CPU-therm" (Jetson), "x86_pkg_temp" (Intel).
CPU_THERMAL_TYPES = ("cpu", "soc", "x86_pkg")


def _read_text(path: Path) -> str | None:
    try:
        return path.read_text(errors="replace")
    except OSError:
        return None


def _read(path: str | Path) -> str | None:
    text = _read_text(Path(path))
    return text.strip() if text is not None else None


def _read_int(path: Path) -> int | None:
    try:
        return int(_read(path) or "")
    except ValueError:
        return None


def cpuinfo_blocks(cpuinfo: str) -> list[dict[str, str]]:
    """/proc/cpuinfo as one ``{key: value}`` per blank-line-separated block (a core, or a trailer)."""
    blocks, block = [], {}
    for line in cpuinfo.splitlines() + [""]:
        key, colon, value = line.partition(":")
        if colon:
            block[key.strip()] = value.strip()
        elif not line.strip() and block:
            blocks.append(block)
            block = {}
    return blocks


def arm_core_name(implementer: int, part: int) -> str:
    vendor, parts = ARM_IMPLEMENTERS.get(implementer, (f"implementer 0x{implementer:02x}", {}))
    return parts.get(part, f"{vendor} part 0x{part:03x}")


def arm_cores(blocks: list[dict[str, str]]) -> str | None:
    """The cores' decoded names, counted per kind when there are several kinds (big.LITTLE), e.g.
    "4× Cortex-A55 + 4× Cortex-A76"; None where no block has an implementer and a part."""
    counts: dict[str, int] = {}
    for block in blocks:
        try:
            name = arm_core_name(int(block["CPU implementer"], 16), int(block["CPU part"], 16))
        except (KeyError, ValueError):
            continue
        counts[name] = counts.get(name, 0) + 1
    if len(counts) > 1:
        return " + ".join(f"{count}× {name}" for name, count in counts.items())
    return next(iter(counts), None)


def cpu_model(cpuinfo: str | None = None, proc: Path = PROC) -> str:
    """The CPU's name from ``cpuinfo`` text (default: read from ``proc``/cpuinfo).

    The decoded implementer/part numbers win over a "model name" line: on ARM that line, where
    present, is a 32-bit kernel's generic "ARMv7 Processor rev 3 (v7l)" or an emulator's invention.
    x86 has only "model name". Unreadable or neither: the platform's processor or machine name."""
    if cpuinfo is None:
        cpuinfo = _read_text(proc / "cpuinfo") or ""
    blocks = cpuinfo_blocks(cpuinfo)
    decoded = arm_cores(blocks)
    if decoded:
        return decoded
    for block in blocks:
        if block.get("model name"):
            return block["model name"]
    return platform.processor() or platform.machine()


def board_model(proc: Path = PROC) -> str | None:
    """The board's name from the device tree (a NUL-terminated string), else from the "Model" line
    Raspberry Pi kernels add to cpuinfo; None on machines with neither (x86)."""
    model = _read(proc / "device-tree" / "model")
    if model:
        return model.rstrip("\x00").strip() or None
    for block in cpuinfo_blocks(_read_text(proc / "cpuinfo") or ""):
        if block.get("Model"):
            return block["Model"]
    return None


def cpu_frequency_mhz(core: int = 0, sys: Path = SYS) -> float | None:
    """``core``'s current clock as cpufreq reports it; None where unreadable."""
    khz = _read_int(sys / f"devices/system/cpu/cpu{core}/cpufreq/scaling_cur_freq")
    return khz / 1000 if khz is not None and khz > 0 else None


def cpu_governor(core: int = 0, sys: Path = SYS) -> str | None:
    return _read(sys / f"devices/system/cpu/cpu{core}/cpufreq/scaling_governor") or None


def _zone_number(zone: Path) -> int:
    digits = zone.name.removeprefix("thermal_zone")
    return int(digits) if digits.isdigit() else 1 << 30


def soc_temperature_c(sys: Path = SYS) -> float | None:
    """The CPU/SoC thermal zone's temperature (the first readable zone where none is typed so);
    None where no zone is readable."""
    try:
        zones = sorted((sys / "class/thermal").glob("thermal_zone*"), key=_zone_number)
    except OSError:
        return None
    readings = []
    for zone in zones:
        millidegrees = _read_int(zone / "temp")
        if millidegrees is not None:
            readings.append(((_read(zone / "type") or "").lower(), millidegrees / 1000))
    for kind, celsius in readings:
        if any(word in kind for word in CPU_THERMAL_TYPES):
            return celsius
    return readings[0][1] if readings else None


def cpu_environment(cores: Sequence[int], proc: Path = PROC, sys: Path = SYS) -> dict:
    """CPU and board identity, and the clock and governor of the first of ``cores`` (on big.LITTLE
    the clusters differ) and the SoC temperature, as they are now."""
    core = cores[0] if cores else None
    return {
        "cpu_model": cpu_model(proc=proc),
        "board_model": board_model(proc),
        "cpufreq_core": core,
        "cpu_frequency_mhz": cpu_frequency_mhz(core, sys) if core is not None else None,
        "cpu_governor": cpu_governor(core, sys) if core is not None else None,
        "soc_temperature_c": soc_temperature_c(sys),
    }


def library_versions() -> dict[str, str | None]:
    versions = {}
    for name in LIBRARIES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = None
    return versions


def git_commit() -> dict[str, object] | None:
    """Commit of the flopsbench checkout, if it is one, and whether it had local changes."""
    root = Path(flopsbench.__file__).resolve().parent.parent
    try:
        commit = subprocess.run(["git", "-C", str(root), "rev-parse", "HEAD"], capture_output=True,
                                text=True, timeout=5, check=True).stdout.strip()
        dirty = subprocess.run(["git", "-C", str(root), "status", "--porcelain", "--untracked-files=no"],
                               capture_output=True, text=True, timeout=5, check=True).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None
    return {"commit": commit, "dirty": bool(dirty)}


def torch_details() -> dict:
    try:
        import torch
    except ImportError:
        return {}
    return {
        "cpu_capability": torch.backends.cpu.get_cpu_capability(),
        "torch_intra_op_threads_default": torch.get_num_threads(),
        "torch_inter_op_threads": torch.get_num_interop_threads(),
        "torch_parallel_info": torch.__config__.parallel_info().strip().splitlines()[:6],
        "mkldnn_enabled": torch.backends.mkldnn.is_available() and torch.backends.mkldnn.enabled,
    }


def onnxruntime_details() -> dict:
    try:
        import onnxruntime
    except ImportError:
        return {}
    return {"onnxruntime_providers": onnxruntime.get_available_providers(),
            "onnxruntime_build": onnxruntime.get_build_info() if hasattr(onnxruntime, "get_build_info") else None}


# Variables that change how fast the same code runs: the allocator's (LD_PRELOAD of jemalloc or
# tcmalloc, glibc's MALLOC_* and tunables: its mmap threshold alone moved dwconv 96x56x56 between
# 2 and 10 ms, see flopsbench.allocator), and those of the thread pools, the kernels' libraries
# and CUDA's launches and allocator.
ALLOCATOR_VARIABLES, ALLOCATOR_PREFIXES = ("LD_PRELOAD", "GLIBC_TUNABLES"), ("MALLOC_",)
TIMING_VARIABLES = (*ALLOCATOR_VARIABLES, "CUDA_LAUNCH_BLOCKING", "PYTORCH_CUDA_ALLOC_CONF", "CUBLAS_WORKSPACE_CONFIG")
TIMING_PREFIXES = (*ALLOCATOR_PREFIXES, "OMP_", "GOMP_", "KMP_", "MKL_", "DNNL_", "ONEDNN_", "OPENBLAS_")


def timing_variables(environ: dict[str, str] = os.environ) -> dict[str, str]:
    """The environment variables of this process that change timing (recorded, not judged)."""
    return {name: value for name, value in sorted(environ.items())
            if name in TIMING_VARIABLES or name.startswith(TIMING_PREFIXES)}


def allocator_variable(name: str) -> bool:
    """Whether ``name`` sets the host's memory allocator: part of a run's protocol (the thread
    libraries' variables are recorded but not: torch and onnxruntime set their threads themselves)."""
    return name in ALLOCATOR_VARIABLES or name.startswith(ALLOCATOR_PREFIXES)


def capture_environment(with_torch: bool = True, cores: Sequence[int] | None = None) -> dict:
    """``with_torch=False`` leaves torch unimported (and its details out), as the torch-free
    board runner needs even where torch happens to be installed. Clock and governor are those of
    the first of ``cores`` (the cores timed on; default: those this process may run on)."""
    allowed = allowed_cores()
    return {
        "hostname": socket.gethostname(),
        "platform": platform.platform(),
        "machine": platform.machine(),
        "python": platform.python_version(),
        "logical_cores": os.cpu_count(),
        "allowed_cores": allowed,
        "timing_variables": timing_variables(),
        **cpu_environment(allowed if cores is None else cores),
        **(torch_details() if with_torch else {}),
        **onnxruntime_details(),
        "libraries": library_versions(),
        "flopsbench": flopsbench.__version__,
        "git": git_commit(),
    }
