"""`flopsbench claims FILE...`: the paper's claims (data in fasternet_published.json) checked against
reports. Reports are built in memory with samples from seeded numpy generators, so each verdict
(holds, fails, inconclusive, not measured) is known before the check runs."""

from __future__ import annotations

import csv
import io
import json
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

import flopsbench_zoo
from flopsbench.claims import (FAILS, HOLDS, INCONCLUSIVE, NOT_MEASURED, Check, Source, direction_verdict, evaluate,
                               paper_claims, parse_claim)
from flopsbench.cli.claims_cmd import VIEWS, render
from flopsbench.compare import MIN_SAMPLES, hierarchical_ratio_interval, split_rounds
from flopsbench.paper import published
from flopsbench.report import Report, Row
from flopsbench.spec import TABLE1_SHAPES, Shape
from flopsbench_zoo.baselines import resolve_model
from tests.conftest import make_report
from tests.test_cli import invoke, stderr_lines
from tests.test_hostile_output import CASES, GENERATED, Terminal, _commands, cell_counts, controls

CLAIMS = {claim.id: claim for claim in paper_claims()}
T0_VS_MOBILEVIT = CLAIMS["t0-faster-than-mobilevit-xxs"]
L_CPU_TIME = CLAIMS["l-less-cpu-time-than-swin-b"]
PCONV_VS_DWCONV = CLAIMS["pconv-flops-per-s-above-dwconv"]
PCONV_AVERAGE = CLAIMS["pconv-average-flops-per-s-vs-dwconv"]
FLOPS_SIXTEENTH = CLAIMS["pconv-flops-one-sixteenth-of-conv"]
MEMORY_QUARTER = CLAIMS["pconv-memory-access-quarter-of-conv"]


def samples(median_s: float, n: int = 40, spread: float = 0.02, seed: int = 0) -> list[float]:
    """``n`` seeded samples around ``median_s``, ± ``spread`` (a normal's standard deviation, relative)."""
    return list(median_s * (1 + spread * np.random.default_rng(seed).standard_normal(n)))


def row(operand, median_s: float, shape: Shape | None = None, flops: int = 1, seed: int = 0, n: int = 40,
        spread: float = 0.02) -> Row:
    return Row(workload=operand.at(shape), flops=flops, samples_s=samples(median_s, n, spread, seed))


def report(rows: list[Row], device: str = "cpu", runtime: str = "torch", batch: int = 1) -> Report:
    made = make_report(rows)
    made.execution = replace(made.execution, device=device, runtime=runtime, batch=batch)
    return made


def sources(*reports: Report) -> list[Source]:
    return [Source(f"r{i}.json", r) for i, r in enumerate(reports, 1)]


def checks_of(claim, *reports: Report) -> list[Check]:
    return evaluate([claim], sources(*reports))


def cpu_check(claim, *reports: Report) -> Check:
    (check,) = [c for c in checks_of(claim, *reports) if c.device == "cpu"]
    return check


def t0_and_mobilevit(t0_ms: float, mobilevit_ms: float, n: int = 40, spread: float = 0.02) -> Report:
    return report([row(T0_VS_MOBILEVIT.a, t0_ms / 1e3, n=n, spread=spread, seed=1),
                   row(T0_VS_MOBILEVIT.b, mobilevit_ms / 1e3, n=n, spread=spread, seed=2)])


# --- the rule ------------------------------------------------------------------------------------------

@pytest.mark.parametrize("interval, claimed, verdict", [
    ((1.2, 1.5), "above", HOLDS), ((0.5, 0.9), "above", FAILS), ((0.9, 1.1), "above", INCONCLUSIVE),
    ((1.0, 1.3), "above", INCONCLUSIVE),  # touching 1 is not 'entirely above'
    ((0.5, 0.9), "below", HOLDS), ((1.2, 1.5), "below", FAILS), ((0.7, 1.0), "below", INCONCLUSIVE),
])
def test_direction_verdict(interval, claimed, verdict):
    assert direction_verdict(interval, 1.0, claimed) == verdict


# --- timed claims: holds, fails, inconclusive ----------------------------------------------------------

def test_a_clear_speedup_holds_beside_the_papers_number():
    check = cpu_check(T0_VS_MOBILEVIT, t0_and_mobilevit(10, 30))
    t0, mobilevit = check.values
    assert check.verdict == HOLDS
    assert check.ratio == pytest.approx(mobilevit.measured / t0.measured)  # MobileViT's latency / T0's
    t0_row, mobilevit_row = t0_and_mobilevit(10, 30).rows  # one round each: their samples resampled
    assert check.interval == hierarchical_ratio_interval([np.asarray(t0_row.samples_s)],
                                                         [np.asarray(mobilevit_row.samples_s)])
    assert 1 < check.interval[0] < check.ratio < check.interval[1]
    assert check.paper == 3.3 and check.paper_position == "above"  # ~3.0 here: the paper's 3.3 lies above
    assert (t0.paper, mobilevit.paper) == (pytest.approx(0.0092), pytest.approx(0.0308))  # Table 3, in s


def test_the_interval_resamples_each_rows_rounds():
    """A row's timing rounds are resampled, then their samples, as compare does."""
    rows = t0_and_mobilevit(10, 30).rows
    for r in rows:
        r.round_sizes = [10, 10, 10, len(r.samples_s) - 30]
    check = cpu_check(T0_VS_MOBILEVIT, report(rows))
    assert check.interval == hierarchical_ratio_interval(split_rounds(rows[0], "")[0], split_rounds(rows[1], "")[0])
    assert check.interval != cpu_check(T0_VS_MOBILEVIT, t0_and_mobilevit(10, 30)).interval


def test_a_reversed_speedup_fails():
    check = cpu_check(T0_VS_MOBILEVIT, t0_and_mobilevit(30, 10))
    assert check.verdict == FAILS and check.interval[1] < 1


def test_equal_speeds_are_inconclusive():
    """Both from one distribution (different seeds): the interval straddles 1."""
    check = cpu_check(T0_VS_MOBILEVIT, t0_and_mobilevit(20, 20, spread=0.1))
    assert check.verdict == INCONCLUSIVE
    assert check.interval[0] < 1 < check.interval[1] and check.reason is None


def test_too_few_samples_are_inconclusive_however_large_the_gap():
    check = cpu_check(T0_VS_MOBILEVIT, t0_and_mobilevit(10, 30, n=MIN_SAMPLES - 1))
    assert check.verdict == INCONCLUSIVE and check.interval is None
    assert f"{MIN_SAMPLES - 1} samples" in check.reason and check.ratio == pytest.approx(3, rel=0.05)


def test_a_median_of_zero_is_inconclusive_not_a_crash():
    rows = t0_and_mobilevit(10, 30).rows
    rows[0].samples_s = [0.0] * 40
    check = cpu_check(T0_VS_MOBILEVIT, report(rows))
    assert check.verdict == INCONCLUSIVE and "median is 0 s" in check.reason


def test_a_time_ratio_is_claimed_below_one():
    a, b = L_CPU_TIME.a, L_CPU_TIME.b
    faster = report([row(a, 0.22, seed=1), row(b, 0.35, seed=2)])
    check = cpu_check(L_CPU_TIME, faster)
    assert check.verdict == HOLDS and check.ratio == pytest.approx(0.22 / 0.35, rel=0.02) and check.paper == 0.63
    slower = report([row(a, 0.35, seed=1), row(b, 0.22, seed=2)])
    assert cpu_check(L_CPU_TIME, slower).verdict == FAILS


def test_a_flops_ratio_scales_the_speedup_by_the_flop_counts():
    """PConv 4 ms at 1,600 FLOPs against DWConv 1 ms at 100: 400 against 100 FLOPs/ms, 4× the FLOPS."""
    shape = TABLE1_SHAPES[0]
    rows = [row(PCONV_VS_DWCONV.a, 0.004, shape, flops=1_600, seed=1),
            row(PCONV_VS_DWCONV.b, 0.001, shape, flops=100, seed=2)]
    checks = [c for c in checks_of(PCONV_VS_DWCONV, report(rows)) if c.device == "cpu"]
    (measured,) = [c for c in checks if c.case == shape]
    assert measured.verdict == HOLDS and measured.ratio == pytest.approx(4, rel=0.02)
    low, high = hierarchical_ratio_interval([np.asarray(rows[0].samples_s)], [np.asarray(rows[1].samples_s)])
    assert measured.interval == pytest.approx((16 * low, 16 * high))
    assert measured.paper == pytest.approx(29.67 / 7.52)  # Table 1, CPU, 96x56x56
    # the other feature maps have no rows: not measured, each naming what is missing
    others = [c for c in checks if c.case != shape]
    assert len(others) == 3 and {c.verdict for c in others} == {NOT_MEASURED}
    assert all("no report has pconv" in c.reason for c in others)


def test_an_average_ratio_averages_each_operators_flops_over_the_feature_maps():
    """PConv at 10, 20, 30, 40 FLOPs/s, DWConv at 1, 2, 3, 4: averages 25 and 2.5, ratio 10."""
    rows = [row(operand, 1.0, shape, flops=flops * i, seed=i + 10 * (operand is PCONV_AVERAGE.b))
            for operand, flops in ((PCONV_AVERAGE.a, 10), (PCONV_AVERAGE.b, 1))
            for i, shape in enumerate(TABLE1_SHAPES, 1)]
    check = cpu_check(PCONV_AVERAGE, report(rows))
    assert check.verdict == HOLDS and check.ratio == pytest.approx(10, rel=0.02)
    assert check.interval[0] < check.ratio < check.interval[1] and check.paper == 6.2
    assert [v.paper for v in check.values] == [pytest.approx(39.91e9), pytest.approx(6.42e9)]  # Average rows


# --- not measured --------------------------------------------------------------------------------------

def test_a_device_without_reports_is_not_measured():
    checks = {c.device: c for c in checks_of(T0_VS_MOBILEVIT, t0_and_mobilevit(10, 30))}
    assert checks["cuda"].verdict == checks["arm"].verdict == NOT_MEASURED
    assert "no report from the GPU" in checks["cuda"].reason and checks["cuda"].paper == 2.8


def test_a_missing_operand_is_named():
    only_t0 = report([row(T0_VS_MOBILEVIT.a, 0.01)])
    check = cpu_check(T0_VS_MOBILEVIT, only_t0)
    assert check.verdict == NOT_MEASURED and "mobilevit_xxs 3x256x256" in check.reason


def test_an_operand_at_other_options_is_not_the_papers():
    other = replace(T0_VS_MOBILEVIT.b.at(None), params=(("num_classes", 10), ("seed", None)))
    rows = t0_and_mobilevit(10, 30).rows
    rows[1].workload = other
    assert cpu_check(T0_VS_MOBILEVIT, report(rows)).verdict == NOT_MEASURED


def test_an_operand_that_failed_says_why():
    failed = Row(workload=T0_VS_MOBILEVIT.b.at(None), status="error", error="RuntimeError: out of memory")
    check = cpu_check(T0_VS_MOBILEVIT, report([row(T0_VS_MOBILEVIT.a, 0.01), failed]))
    assert check.verdict == NOT_MEASURED and "RuntimeError: out of memory" in check.reason


# --- which rows: protocols, duplicates -----------------------------------------------------------------

def test_each_protocol_gets_its_own_check_and_rows_never_mix_them():
    """torch and onnxruntime on one CPU: two checks; T0 in one and MobileViT in the other: neither."""
    both = [c for c in checks_of(T0_VS_MOBILEVIT, t0_and_mobilevit(10, 30),
                                 report(t0_and_mobilevit(30, 10).rows, runtime="onnxruntime")) if c.device == "cpu"]
    assert [(c.protocol.split(",")[0], c.verdict) for c in both] == [("torch", HOLDS), ("onnxruntime", FAILS)]
    split = [report([row(T0_VS_MOBILEVIT.a, 0.01)]), report([row(T0_VS_MOBILEVIT.b, 0.03)], runtime="onnxruntime")]
    assert {c.verdict for c in checks_of(T0_VS_MOBILEVIT, *split)} == {NOT_MEASURED}


def test_of_two_reports_with_every_row_the_one_with_more_samples_is_used_and_said():
    small, large = t0_and_mobilevit(30, 10, n=20), t0_and_mobilevit(10, 30, n=60)
    check = cpu_check(T0_VS_MOBILEVIT, small, large)
    assert check.verdict == HOLDS and check.files == ("r2.json",)
    assert any("used r2.json" in note and "(60)" in note and "r1.json (20)" in note for note in check.notes)


def test_rows_from_different_reports_of_one_protocol_are_paired_and_said_to_be():
    t0 = [row(T0_VS_MOBILEVIT.a, 0.010, seed=1, n=20), row(T0_VS_MOBILEVIT.a, 0.030, seed=3, n=50)]
    check = cpu_check(T0_VS_MOBILEVIT, report([t0[0]]), report([t0[1]]),
                      report([row(T0_VS_MOBILEVIT.b, 0.030, seed=2)]))
    assert check.ratio == pytest.approx(1, rel=0.05)  # T0's row of 50 samples (30 ms), not of 20 (10 ms)
    assert check.files == ("r2.json", "r3.json")
    assert any("different runs" in note for note in check.notes)
    assert any("fasternet_t0 3x224x224: 2 reports have it: used r2.json" in note for note in check.notes)


def test_a_gpu_check_at_another_batch_than_the_papers_says_so():
    gpu = report(t0_and_mobilevit(10, 30).rows, device="cuda", batch=1)
    (check,) = [c for c in checks_of(T0_VS_MOBILEVIT, gpu) if c.device == "cuda"]
    assert check.verdict == HOLDS and any("the paper measured cuda at batch 32" in note for note in check.notes)
    t0, _ = check.values
    assert t0.quantity == "throughput_per_s" and t0.measured == pytest.approx(100, rel=0.02)  # 1 image / 10 ms


# --- counted claims ------------------------------------------------------------------------------------

def _conv_and_pconv(shape: Shape) -> list[Row]:
    """The paper's formulas by hand, 10 layers: FLOPs h·w·k²·c² and h·w·k²·c_p²; ideal memory access
    h·w·2c + k²c² and h·w·2c_p + k²c_p² elements of 4 bytes."""
    c, h, w = shape.c, shape.h, shape.w
    cp = c // 4
    conv = Row(workload=FLOPS_SIXTEENTH.b.at(shape), flops=10 * h * w * 9 * c * c,
               memory_ideal_bytes=4 * 10 * (h * w * 2 * c + 9 * c * c))
    pconv = Row(workload=FLOPS_SIXTEENTH.a.at(shape), flops=10 * h * w * 9 * cp * cp,
                memory_ideal_bytes=4 * 10 * (h * w * 2 * cp + 9 * cp * cp))
    return [conv, pconv]


def test_pconv_flops_are_one_sixteenth_of_convs_and_an_other_count_fails():
    checks = checks_of(FLOPS_SIXTEENTH, report([r for shape in TABLE1_SHAPES for r in _conv_and_pconv(shape)]))
    assert [(c.case, c.verdict, c.ratio) for c in checks] == [(shape, HOLDS, 1 / 16) for shape in TABLE1_SHAPES]
    assert checks[0].interval is None and checks[0].values[0].paper == 162e6  # Table 1 prints 162 M
    conv, pconv = _conv_and_pconv(TABLE1_SHAPES[0])
    pconv.flops += 1
    assert checks_of(FLOPS_SIXTEENTH, report([conv, pconv]))[0].verdict == FAILS


def test_memory_access_is_a_quarter_only_where_the_activations_dominate():
    """(56·56·2·24 + 9·24²) / (56·56·2·96 + 9·96²) = 155,712 / 685,056 = 0.227: within 10 % of 1/4;
    at 768x7x7 the weights dominate: 35,059 / 538,368 = 0.065."""
    checks = checks_of(MEMORY_QUARTER, report([r for shape in TABLE1_SHAPES for r in _conv_and_pconv(shape)]))
    assert checks[0].ratio == pytest.approx(155_712 / 685_056) and checks[0].verdict == HOLDS
    assert checks[-1].ratio == pytest.approx(35_059.2 / 538_368) and checks[-1].verdict == FAILS


def test_a_count_needs_both_rows_in_one_report():
    conv, pconv = _conv_and_pconv(TABLE1_SHAPES[0])
    check = checks_of(FLOPS_SIXTEENTH, report([conv]), report([pconv]))[0]
    assert check.verdict == NOT_MEASURED and "pconv 96x56x56 ×10 and conv 96x56x56 ×10" in check.reason


def test_the_claims_need_no_torch():
    """The claims read reports and the paper's data: a machine without torch (a board's host) can check them."""
    code = "import sys, flopsbench.claims; sys.exit('torch' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code], cwd=Path(__file__).parent.parent).returncode == 0


# --- the data ------------------------------------------------------------------------------------------

def test_every_claim_names_its_source_and_its_operands_are_the_registrys_defaults():
    """The claims' workloads are what 'flopsbench ops' and 'flopsbench model' run by default, so a
    default run's rows are found; the labels are the paper's names in Tables 1 and 3."""
    table1 = {entry["operator"] for entry in published()["operators_table"]}
    table3 = {entry["name"] for entry in published()["models"]}
    for claim in CLAIMS.values():
        assert claim.text and claim.where and ("Table" in claim.where or "Eq." in claim.where)
        for operand in (claim.a, claim.b):
            data = operand.workload
            if data["kind"] == "model":
                model = resolve_model(data["name"])
                assert data["params"] == dict(model.defaults) and data["shape"] == [3, *[model.input_resolution] * 2]
                assert operand.label == model.paper_label and operand.label in table3
            else:
                op = flopsbench_zoo.get_operator(data["name"])
                assert data["params"] == dict(op.defaults) and operand.label == op.paper_label in table1


def test_the_papers_model_numbers_follow_from_table3():
    """2.8×, 3.3×, 2.4×, +36 % and −37 %: the text's numbers are Table 3's ratios, rounded."""
    models = {m["name"]: m for m in published()["models"]}
    t0, mobilevit, large, swin = (models[n] for n in ("FasterNet-T0", "MobileViT-XXS", "FasterNet-L", "Swin-B"))
    assert T0_VS_MOBILEVIT.paper == {"cuda": round(t0["gpu_throughput_fps"] / mobilevit["gpu_throughput_fps"], 1),
                                     "cpu": round(mobilevit["cpu_latency_ms"] / t0["cpu_latency_ms"], 1),
                                     "arm": round(mobilevit["arm_latency_ms"] / t0["arm_latency_ms"], 1)}
    assert CLAIMS["l-higher-gpu-throughput-than-swin-b"].paper["cuda"] == round(
        large["gpu_throughput_fps"] / swin["gpu_throughput_fps"], 2)
    assert L_CPU_TIME.paper["cpu"] == round(large["cpu_latency_ms"] / swin["cpu_latency_ms"], 2)


def test_a_malformed_claim_is_refused_by_name():
    data = json.loads(json.dumps(published()["claims"][0]))
    data["kind"] = "vibes"
    with pytest.raises(ValueError, match="t0-faster-than-mobilevit-xxs"):
        parse_claim(data)
    del data["a"]
    with pytest.raises(ValueError, match="malformed"):
        parse_claim(data)


# --- the command and its views -------------------------------------------------------------------------

@pytest.fixture
def saved(tmp_path):
    path = tmp_path / "model.json"
    path.write_text(t0_and_mobilevit(10, 30).to_json())
    return path


@pytest.mark.parametrize("fmt", sorted(VIEWS))
def test_the_command_renders_every_view(saved, fmt):
    result = invoke(["claims", saved, "--format", fmt])
    assert result.exit_code == 0, result.output
    assert "holds" in result.stdout and "not measured" in result.stdout


def test_csv_is_unrounded_and_json_complete(saved):
    records = list(csv.DictReader(io.StringIO(invoke(["claims", saved, "--format", "csv"]).stdout)))
    (cpu,) = [r for r in records if r["Claim"] == T0_VS_MOBILEVIT.id and r["Device"] == "CPU"]
    check = cpu_check(T0_VS_MOBILEVIT, t0_and_mobilevit(10, 30))
    assert float(cpu["Ratio"]) == check.ratio and float(cpu["Ratio CI low"]) == check.interval[0]
    data = json.loads(invoke(["claims", saved, "--format", "json"]).stdout)
    assert data["schema"] == "flopsbench.claims" and {c["id"] for c in data["claims"]} == set(CLAIMS)
    assert {c["verdict"] for c in data["checks"]} == {HOLDS, NOT_MEASURED}


def test_writes_to_a_file(saved, tmp_path):
    out = tmp_path / "claims.md"
    result = invoke(["claims", saved, "--format", "md", "-o", out])
    assert result.exit_code == 0 and out.read_text() == invoke(["claims", saved, "--format", "md"]).stdout


@pytest.mark.parametrize("content, says", [(None, "cannot read"), ("{", "is not JSON"),
                                           ('{"schema": "x"}', "is not a flopsbench report")])
def test_an_unreadable_file_is_one_line_exit_2(saved, tmp_path, content, says):
    bad = tmp_path / "bad.json"
    if content is not None:
        bad.write_text(content)
    result = invoke(["claims", saved, bad])
    assert result.exit_code == 2 and "Traceback" not in result.output and result.stdout == ""
    (line,) = stderr_lines(result)
    assert "bad.json" in line and says in line, line


def _hostile_checks(text: str) -> tuple[list[Check], list[Source]]:
    """``text`` as a file name, a host, a runtime option and the error of a row that was not timed."""
    rows = t0_and_mobilevit(10, 30).rows
    rows[1] = Row(workload=rows[1].workload, status="error", error=text)
    made = report(rows)
    made.environment["hostname"] = text
    made.execution = replace(made.execution, runtime_options=((text, text),))
    given = [Source(text, made), Source("ok.json", t0_and_mobilevit(10, 30))]
    return evaluate(list(CLAIMS.values()), given), given


@CASES
def test_hostile_text_stays_text_in_every_view(text):
    checks, given = _hostile_checks(text)
    stream = Terminal()
    VIEWS["table"](checks, given, stream)
    assert controls(stream.getvalue()) == []
    md = render(checks, given, "md").splitlines()
    assert len(cell_counts(md)) == 1  # every row has the header's cells
    assert not any(line.startswith(("#", "<")) for line in md)
    assert _commands(render(checks, given, "latex")) <= GENERATED
    records = list(csv.reader(io.StringIO(render(checks, given, "csv"))))
    assert len(records) == len(checks) + 1 and not any(cell.startswith(("=", "+", "-", "@"))
                                                       for record in records for cell in record)
    json.loads(render(checks, given, "json"))
