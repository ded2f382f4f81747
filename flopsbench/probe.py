"""What a device is, read on the device itself: ``python -m flopsbench.probe --cores 0,1`` prints one
JSON object. ``flopsbench devices`` shows it, and a run with ``--on`` keeps it as its report's
environment (the machine the samples came from, not the one that counted).

It holds the machine, architecture, CPU model, clock, governor and temperature of the first pinned
core (flopsbench.environment), the userland's word size (the Python's own pointer size: a 64-bit
kernel can run a 32-bit userland, where ``uname -m`` says aarch64 and onnxruntime's aarch64 wheels do
not install), the versions of Python, numpy and onnxruntime, and the load of the pinned cores over a
short window (flopsbench.busy). Torch-free, like the worker it is shipped with."""

from __future__ import annotations

import argparse
import json
import struct
import sys

from flopsbench import busy
from flopsbench.environment import capture_environment


def probe(cores: tuple[int, ...]) -> dict:
    environment = capture_environment(with_torch=False, cores=cores)
    environment.pop("git", None)  # a shipped copy has no repository
    return {
        "environment": environment,
        "userland_bits": struct.calcsize("P") * 8,
        "numpy": _version("numpy"),
        "pinned_core_load": busy.pinned_core_load(cores),
    }


def _version(module: str) -> str | None:
    try:
        return __import__(module).__version__
    except ImportError:
        return None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m flopsbench.probe", description=__doc__.splitlines()[0])
    parser.add_argument("--cores", default="0", help="the cores the device times on, e.g. 0 or 2,3")
    args = parser.parse_args(argv)
    try:
        cores = tuple(int(core) for core in args.cores.split(","))
    except ValueError:
        parser.error(f"--cores: {args.cores!r} is not a list of core numbers")
    print(json.dumps(probe(cores)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
