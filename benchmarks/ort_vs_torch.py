"""onnxruntime against PyTorch on this CPU, in one run: every case is prepared for both runtimes
and all of them are timed in the same interleaved rounds (batch 1, one pinned thread).

    python benchmarks/ort_vs_torch.py                 # Table 1's 20 rows and FasterNet-T0
"""

from __future__ import annotations

import argparse
from dataclasses import replace

import operators
from flopsbench.cpu import set_interop_threads_once
from flopsbench.runner import finish_row, prepare_case, time_round
from flopsbench.spec import TABLE1_SHAPES, Execution, Shape, TimingBudget, Workload

ORT = {"runtime": "onnxruntime", "runtime_options": (("opt_level", "all"), ("spinning", True))}


def workloads() -> list[Workload]:
    ops = [Workload(name, shape, 10, tuple(operators.get_operator(name).defaults.items()))
           for name in operators.list_operators() for shape in TABLE1_SHAPES]
    t0 = Workload("fasternet_t0", Shape(3, 224, 224), 1, tuple(operators.get_model("fasternet_t0").defaults.items()),
                  kind="model", fuse_bn=True)
    return ops + [t0]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--min-time", type=float, default=2.0)
    parser.add_argument("--rounds", type=int, default=4)
    args = parser.parse_args()
    set_interop_threads_once(1)
    torch_ex = Execution(budget=TimingBudget(min_time_s=args.min_time, rounds=args.rounds))
    ort_ex = replace(torch_ex, **ORT)
    pairs = [(prepare_case(w, torch_ex), prepare_case(w, ort_ex)) for w in workloads()]
    for index in range(args.rounds):
        for pair in pairs:
            for case, execution in zip(pair, (torch_ex, ort_ex)):
                if case.row.status == "ok":
                    time_round(case.row, case.call, execution, execution.budget.round_share(index))
    print(f"{'workload':22} {'torch [ms]':>11} {'onnxruntime [ms]':>17} {'ort / torch':>12}")
    for torch_case, ort_case in pairs:
        finish_row(torch_case.row, torch_ex)
        finish_row(ort_case.row, ort_ex)
        w = torch_case.row.workload
        a, b = torch_case.row.stats.median_s * 1e3, ort_case.row.stats.median_s * 1e3
        flag = " (warnings)" if torch_case.row.warnings or ort_case.row.warnings else ""
        print(f"{w.name + ' ' + str(w.shape):22} {a:11.3f} {b:17.3f} {b / a:12.3f}{flag}")


if __name__ == "__main__":
    main()
