"""Names the torch-free side (the worker, the board runner) shares with the torch side, kept here
so that neither imports the other for a string."""

from __future__ import annotations

import os
import platform
from pathlib import Path

METADATA_KEY = "flopsbench"  # the key of flopsbench's metadata in an exported ONNX file's metadata_props
ARM_MACHINES = ("aarch64", "arm64")  # platform.machine() of an ARM host
ARM_NOTE = ("ARM latency measured with onnxruntime's CPU execution provider, not PyTorch "
            "as in the FasterNet paper's ARM column")


def device_name(machine: str | None = None) -> str:
    """'arm' on an aarch64 host, else 'cpu' (a report's Execution.device for onnxruntime on this CPU)."""
    return "arm" if (machine or platform.machine()).lower() in ARM_MACHINES else "cpu"


def cache_root() -> Path:
    """flopsbench's cache: $FLOPSBENCH_CACHE, else $XDG_CACHE_HOME/flopsbench (~/.cache/flopsbench);
    ONNX exports and measured ceilings each have a folder in it."""
    default = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "flopsbench"
    return Path(os.environ.get("FLOPSBENCH_CACHE") or default)
