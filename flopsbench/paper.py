"""The FasterNet paper's published numbers (Chen et al., CVPR 2023), shipped as data in
data/fasternet_published.json, and the look-ups that put them beside measured rows."""

from __future__ import annotations

import json
from functools import lru_cache
from importlib import resources

from flopsbench.spec import Execution, Workload

TABLE1_LAYERS = 10
# Which published columns describe a device: (latency or throughput field, FLOPS field).
DEVICE_COLUMNS = {
    "cpu": ("cpu_latency_ms", "cpu_flops_G_per_s"),
    "arm": ("arm_latency_ms", "arm_flops_G_per_s"),
    "cuda": ("gpu_throughput_fps", "gpu_flops_G_per_s"),
}

# The paper's protocol per device (Sec. 4): latency at batch 1 on CPU and ARM, throughput at
# batch 32 on the GPU, all fp32. Ratios to its numbers mean something only under the same one.
PROTOCOL = {"cpu": (1, "fp32"), "arm": (1, "fp32"), "cuda": (32, "fp32")}


def precision_label(execution: Execution) -> str:
    """The dtype as computed: on a GPU, fp32 is IEEE fp32 or (--tf32) rounded to TF32 in convs and matmuls."""
    if execution.device != "cuda" or execution.dtype != "fp32":
        return execution.dtype
    return "fp32 with TF32 convs and matmuls" if execution.option("tf32") else "fp32 (IEEE, no TF32)"


def protocol_mismatch(execution: Execution) -> str | None:
    """Why this run's numbers cannot be divided by the paper's, or None if they can."""
    batch, dtype = PROTOCOL[execution.device]
    if (execution.batch, execution.dtype) == (batch, dtype) and not execution.option("tf32"):
        return None
    return (f"the paper measured {execution.device} at batch {batch}, {dtype} (IEEE); this run used batch "
            f"{execution.batch}, {precision_label(execution)}")


@lru_cache(maxsize=1)
def published() -> dict:
    return json.loads(resources.files("flopsbench").joinpath("data/fasternet_published.json").read_text())


def table1_row(workload: Workload) -> dict | None:
    """The paper's Table 1 entry for this workload, or None if the paper has no such row
    (another operator, shape, layer count or parameter setting)."""
    import flopsbench_zoo  # here: the registries import torch, and the claims and the comparison need none

    try:
        op = flopsbench_zoo.get_operator(workload.name)
    except KeyError:
        return None
    if op.paper_label is None or workload.layers != TABLE1_LAYERS or workload.param_dict != dict(op.defaults):
        return None

    shape = workload.shape
    for entry in published()["operators_table"]:
        fm = entry["feature_map"]
        if entry["operator"] == op.paper_label and (fm["c"], fm["h"], fm["w"]) == (shape.c, shape.h, shape.w):
            return entry
    return None


def table3_row(workload: Workload) -> dict | None:
    """The paper's Table 3 entry for this model at its default options (and, for FasterNet,
    at the 224×224 input the paper states), or None."""
    from flopsbench_zoo.baselines import resolve_model  # here: it imports torch (see table1_row)

    try:
        model = resolve_model(workload.name)
    except KeyError:
        return None
    if model.paper_label is None or workload.param_dict != dict(model.defaults) or workload.weights:
        return None
    if workload.shape.h != model.input_resolution:
        return None
    return next((m for m in published()["models"] if m["name"] == model.paper_label), None)
