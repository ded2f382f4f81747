"""torch on the CPU: ``module(x)`` under inference mode, timed by the wall clock."""

from __future__ import annotations

import torch

from flopsbench.backends import Backend, Prepared
from flopsbench.build import bn_pairs_from, build_case
from flopsbench.cpu import set_interop_threads_once
from flopsbench.spec import Execution, Workload


class TorchCPU(Backend):
    preload = ("flopsbench.backends.torch_cpu",)  # and with it torch and the operators

    def prepare(self, case: dict, execution: Execution) -> Prepared:
        set_interop_threads_once(1)  # before any inter-op work in this fresh process
        module, x = build_case(Workload.from_dict(case["workload"]), execution, device="cpu",
                               bn_pairs=bn_pairs_from(case.get("bn_pairs")))
        return Prepared(call=lambda: module(x), settings=torch.inference_mode, torch_threads=True,
                        module=module, x=x)
