"""onnxruntime's CPU execution provider, on this CPU or an ARM board.

The parent exports the counted module to ONNX (cached) and checks onnxruntime's output against
PyTorch's; the worker only opens a session on the file and times it, so it needs neither torch
nor onnx, just onnxruntime and numpy."""

from __future__ import annotations

import numpy as np

from flopsbench.backends import Backend, Prepared
from flopsbench.constants import ARM_NOTE
from flopsbench.ort_runtime import make_session
from flopsbench.spec import Execution, Workload


class OnnxRuntime(Backend):
    preload = ("flopsbench.backends.ort",)  # and with it onnxruntime and numpy
    builds_from_spec = False  # it opens the parent's ONNX file: no plugin (nor torch) is needed

    def stage(self, row, module, x, execution: Execution) -> dict:
        from flopsbench.build import build_input
        from flopsbench.onnx_export import cached_export, compare_with_torch, export_metadata

        if x is None:  # counted at small batches: the export takes the run's own batch
            x = build_input(row.workload, execution)

        path, cached, problem = cached_export(module, x, export_metadata(row, execution))
        session, _ = session_for(path, execution)
        worst = compare_with_torch(session, {session.get_inputs()[0].name: x.numpy()}, module, x)
        row.runtime = {"onnx_file": str(path), "export_cached": cached, "pconv_exported_as": "split_cat",
                       "max_abs_diff_vs_torch": worst}
        if problem:  # a damaged cache entry, exported again
            row.runtime["export_cache_problem"] = problem
        return {"onnx": str(path)}

    def prepare(self, case: dict, execution: Execution) -> Prepared:
        session, record = session_for(case["onnx"], execution)
        shape = Workload.from_dict(case["workload"]).shape
        x = np.random.default_rng(execution.seed).standard_normal((execution.batch, shape.c, shape.h, shape.w),
                                                                   dtype=np.float32)
        feeds = {session.get_inputs()[0].name: x}
        record["input"] = f"numpy default_rng({execution.seed}).standard_normal, float32"
        if execution.device == "arm":
            record["note"] = ARM_NOTE
        return Prepared(call=lambda: session.run(None, feeds), runtime=record, pins_own_workers=True)


def session_for(path, execution: Execution):
    """(session, settings record) for an ONNX file, set up as ``execution`` asks."""
    options = dict(execution.runtime_options)
    return make_session(path, execution.threads, execution.cores, options.get("opt_level", "all"),
                        options.get("spinning", True))
