"""onnxruntime against PyTorch on this CPU, in one run: every case is counted (and exported) for
both runtimes, then each round times all torch cases in one fresh worker and all onnxruntime
cases in another, alternating (batch 1, one pinned thread).

    python benchmarks/ort_vs_torch.py                 # Table 1's 20 rows and FasterNet-T0
"""

from __future__ import annotations

import argparse
from dataclasses import replace

import flopsbench_zoo
from flopsbench.backends import backend_for
from flopsbench.report import Report, Row, error_line
from flopsbench.rounds import Case, round_seed, run_job
from flopsbench.runner import count_and_stage
from flopsbench.sampling import finish_row
from flopsbench.spec import TABLE1_SHAPES, Execution, Shape, TimingBudget, Workload

ORT = {"runtime": "onnxruntime", "runtime_options": (("opt_level", "all"), ("spinning", True))}


def workloads() -> list[Workload]:
    ops = [Workload(name, shape, 10, tuple(flopsbench_zoo.get_operator(name).defaults.items()))
           for name in flopsbench_zoo.list_operators() for shape in TABLE1_SHAPES]
    t0 = Workload("fasternet_t0", Shape(3, 224, 224), 1,
                  tuple(flopsbench_zoo.get_model("fasternet_t0").defaults.items()), kind="model", fuse_bn=True)
    return ops + [t0]


def counted(workload: Workload, execution: Execution) -> Case:
    row = Row(workload)
    try:
        return count_and_stage(row, execution, backend_for(execution))
    except Exception as exc:  # noqa: BLE001 -- shown as a failed row
        row.status, row.error = "error", error_line(exc)
        return Case(row)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--min-time", type=float, default=2.0)
    parser.add_argument("--rounds", type=int, default=4)
    args = parser.parse_args()
    torch_ex = Execution(budget=TimingBudget(min_time_s=args.min_time, rounds=args.rounds))
    ort_ex = replace(torch_ex, **ORT)
    pairs = [(counted(w, torch_ex), counted(w, ort_ex)) for w in workloads()]
    reports = {ex: Report("ops", ex, {}) for ex in (torch_ex, ort_ex)}
    transports = {ex: backend_for(ex).transport() for ex in (torch_ex, ort_ex)}
    for index in range(args.rounds):
        for side, execution in enumerate((torch_ex, ort_ex)):
            due = [pair[side] for pair in pairs if pair[side].row.status == "ok"]
            run_job(reports[execution], due, "time", execution.budget.round_share(index), transports[execution],
                    lambda case: None, round_index=index, seed=round_seed(execution.seed, index))
    print(f"{'workload':22} {'torch [ms]':>11} {'onnxruntime [ms]':>17} {'ort / torch':>12}")
    for torch_case, ort_case in pairs:
        finish_row(torch_case.row, torch_ex)
        finish_row(ort_case.row, ort_ex)
        w = torch_case.row.workload
        if torch_case.row.stats is None or ort_case.row.stats is None:
            print(f"{w.name + ' ' + str(w.shape):22} failed: {torch_case.row.error or ort_case.row.error}")
            continue
        a, b = torch_case.row.stats.median_s * 1e3, ort_case.row.stats.median_s * 1e3
        flag = " (warnings)" if torch_case.row.warnings or ort_case.row.warnings else ""
        print(f"{w.name + ' ' + str(w.shape):22} {a:11.3f} {b:17.3f} {b / a:12.3f}{flag}")


if __name__ == "__main__":
    main()
