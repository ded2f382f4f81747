"""The environment a report was measured in: machine, libraries, tool version and commit.
torch and onnxruntime details are recorded when they are installed (a board may have neither
torch nor git)."""

from __future__ import annotations

import os
import platform
import socket
import subprocess
from importlib import metadata
from pathlib import Path

import flopsbench
from flopsbench.cpu import allowed_cores

LIBRARIES = ("torch", "fvcore", "numpy", "onnx", "onnxruntime", "timm", "torchvision")


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _read(path: str) -> str | None:
    try:
        return Path(path).read_text().strip()
    except OSError:
        return None


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


def capture_environment(with_torch: bool = True) -> dict:
    """``with_torch=False`` leaves torch unimported (and its details out), as the torch-free
    board runner needs even where torch happens to be installed."""
    return {
        "hostname": socket.gethostname(),
        "platform": platform.platform(),
        "machine": platform.machine(),
        "python": platform.python_version(),
        "cpu_model": cpu_model(),
        "logical_cores": os.cpu_count(),
        "allowed_cores": allowed_cores(),
        "cpu_governor": _read("/sys/devices/system/cpu/cpu0/cpufreq/scaling_governor"),
        **(torch_details() if with_torch else {}),
        **onnxruntime_details(),
        "libraries": library_versions(),
        "flopsbench": flopsbench.__version__,
        "git": git_commit(),
    }
