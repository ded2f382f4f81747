"""What makes rows of two reports the same measurement, and two reports runs of the same protocol
(``flopsbench compare``): rows pair by their workload's identity, never by position, and two
reports whose protocols differ are not compared at all, since every ratio between them would mix
the change looked for with the change of protocol."""

from __future__ import annotations

import re

from flopsbench.environment import allocator_variable
from flopsbench.escaping import plain_text
from flopsbench.paper import precision_label
from flopsbench.report import Report
from flopsbench.spec import Workload

# Runtime options that leave the timed rows' speed alone: --find-max-batch runs after the rounds,
# and tf32 is part of the precision (precision_label) already.
SPEED_NEUTRAL_OPTIONS = frozenset({"find_max_batch", "tf32"})


def workload_identity(workload: Workload, layers: bool = True) -> tuple:
    """(kind, name, shape, layers, params sorted by name, weights file, fuse_bn): equal for the same
    workload in any report. Parameter values compare by their repr, so that 1, 1.0 and True stay
    apart (Python finds them equal); the weights by file name, as the same checkpoint lies at
    another path on another machine. ``layers=False`` leaves the layer count out."""
    shape = workload.shape
    params = tuple(sorted((str(key), repr(value)) for key, value in workload.params))
    weights = None if workload.weights is None else re.split(r"[/\\]", str(workload.weights))[-1]
    return (workload.kind, workload.name, (shape.c, shape.h, shape.w), workload.layers if layers else None,
            params, weights, workload.fuse_bn)


def protocol(report: Report) -> dict[str, str]:
    """How the report's rows were measured, each aspect as it completes 'BASE …': what it is a
    report of, the device, runtime, batch, threads, precision (dtype, and TF32 on a GPU) and every
    runtime option that changes the speed (CUDA graphs, L2 flush, channels-last, the GPU's timing
    mode, onnxruntime's optimisation level and spinning), and the allocator's convention and the
    environment variables that set it (glibc's page faults move some rows 4x). Not in it: the
    machine, the cores, the timing budget and the seed: comparing those is what compare is for, or
    they change no speed."""
    execution, text = report.execution, plain_text
    threads = execution.threads
    aspects = {
        "command": f"is {'a' if report.command == 'model' else 'an'} {text(report.command)} report",
        "device": f"ran on {text(execution.device)}",
        "runtime": f"ran {text(execution.runtime)}",
        "batch": f"is batch {text(execution.batch)}",
        "threads": f"ran {text(threads)} thread{'s' * (threads != 1)}",
        "precision": f"computed in {text(precision_label(execution))}",
        "allocator": f"ran with --allocator {text(execution.allocator)}",
    }
    for key, value in sorted(dict(execution.runtime_options).items()):
        if key not in SPEED_NEUTRAL_OPTIONS:
            aspects[f"option {key}"] = f"has {text(key)}={text(value)}"
    for name, value in allocator_variables(report).items():
        aspects[f"variable {name}"] = f"ran with {text(name)}={text(value)}"
    return aspects


def allocator_variables(report: Report) -> dict[str, str]:
    """The variables that set the host's allocator among those the report recorded
    (environment.timing_variables); none where it recorded none (older reports) or holds no
    mapping (a hand-edited file)."""
    found = report.environment.get("timing_variables") if isinstance(report.environment, dict) else None
    if not isinstance(found, dict):
        return {}
    return dict(sorted((str(name), str(value)) for name, value in found.items() if allocator_variable(str(name))))


def protocol_differences(base: Report, new: Report) -> list[str]:
    """Each aspect of the protocol in which the two reports differ, as 'BASE is batch 1, NEW is
    batch 32' (one-line text: option values from a file are made plain). Where the kind of report,
    the device or the runtime differs, the runtime options, which follow from them, are left out."""
    a, b = protocol(base), protocol(new)
    missing = "has no {} option"
    differences = []
    options_follow = any(a[aspect] != b[aspect] for aspect in ("command", "device", "runtime"))
    for aspect in dict.fromkeys([*a, *b]):
        if options_follow and aspect.startswith("option "):
            continue
        if aspect.startswith("variable "):
            absent = f"ran without {plain_text(aspect.removeprefix('variable '))}"
        else:
            absent = missing.format(plain_text(aspect.removeprefix("option ")))
        first, second = a.get(aspect, absent), b.get(aspect, absent)
        if first != second:
            differences.append(f"BASE {first}, NEW {second}")
    return differences
