"""Names the torch-free side (the worker, the board runner) shares with the torch side, kept here
so that neither imports the other for a string."""

from __future__ import annotations

import platform

METADATA_KEY = "flopsbench"  # the key of flopsbench's metadata in an exported ONNX file's metadata_props
ARM_MACHINES = ("aarch64", "arm64")  # platform.machine() of an ARM host
ARM_NOTE = ("ARM latency measured with onnxruntime's CPU execution provider, not PyTorch "
            "as in the FasterNet paper's ARM column")


def device_name(machine: str | None = None) -> str:
    """'arm' on an aarch64 host, else 'cpu' (a report's Execution.device for onnxruntime on this CPU)."""
    return "arm" if (machine or platform.machine()).lower() in ARM_MACHINES else "cpu"
