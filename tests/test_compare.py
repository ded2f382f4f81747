"""`flopsbench compare BASE NEW` (rows paired by workload identity, the ratio of medians with a
hierarchical bootstrap interval, the Mann-Whitney U test on the rounds' medians, --fail-above), the
uncertainty every report carries
(p90, p99, the intervals of the `/ paper` ratios), and hostile text in the comparison's views.

Reports are built in memory (tests.conftest) with samples from seeded numpy generators."""

from __future__ import annotations

import re

import csv
import errno
import io
import itertools
import json
import math
from dataclasses import replace

import numpy as np
import pytest

import flopsbench.cli.options
from flopsbench.cli import compare_cmd as compare_views
from flopsbench.cli.compare_cmd import VIEWS, parse_percentage, render as render_comparison
from flopsbench.compare import (ALPHA, EXACT_MAX_ROUNDS, FASTER, MIN_ROUNDS, MIN_SAMPLES, NO_CHANGE, NOT_COMPARED,
                                ONLY_BASE, ONLY_NEW, SLOWER, TOO_FEW, TOO_FEW_ROUNDS, ProtocolError,
                                compare_reports, compare_rows, hierarchical_ratio_interval,
                                mann_whitney_p, rank_test_p, split_rounds)
from flopsbench.escaping import csv_text, markdown_text, plain_text
from flopsbench.exporters import render
from flopsbench.report import Report, Row
from flopsbench.spec import Shape, Workload
from flopsbench_zoo.baselines import resolve_model
from tests.conftest import conv_table1_row, make_report
from tests.test_cli import _assert_one_line_error, invoke, stderr_lines
from tests.test_hostile_output import (CASES, GENERATED, Terminal, _commands, cell_counts, controls, hostile_report,
                                       markdown_tokens)


def _csv_records(report: Report, paper: bool = False) -> list[dict]:
    return list(csv.DictReader(io.StringIO(render(report, "csv", paper))))


# --- p90 and p99 in the statistics and the JSON -------------------------------------------------------

def test_stats_json_has_p90_and_p99_by_hand(hand_report):
    """numpy's linear percentiles, as the quartiles: p90 of 30..34 ms lies at 0.9·4 = 3.6 of the
    way, p99 at 3.96."""
    stats = json.loads(hand_report.to_json())["rows"][0]["stats"]
    assert stats["p90_s"] == pytest.approx(0.0336)
    assert stats["p99_s"] == pytest.approx(0.03396)
    assert (stats["ci_low_s"], stats["ci_high_s"]) == (None, None)  # 5 samples: too few for the median's interval


def test_a_saved_reports_stats_are_computed_again_from_its_samples(hand_report):
    """The schema reads past 'stats' (computed from samples_s), so an edited p90 changes nothing."""
    data = json.loads(hand_report.to_json())
    data["rows"][0]["stats"]["p90_s"] = "not a number"
    assert Report.from_dict(data).rows[0].stats.p90_s == pytest.approx(0.0336)


# --- the intervals of the '/ paper' ratios ----------------------------------------------------------

def _ten_sample_conv() -> Row:
    """Conv 3x3 ×10 at 96x56x56 with samples 30..39 ms: median 34.5 ms; the median's 95 % interval
    is the 1st and 10th sample (k = floor((10 - 1.96·√10) / 2) = 1), [30, 39] ms."""
    row = conv_table1_row()
    row.samples_s = [0.030 + i / 1000 for i in range(10)]
    return row


def test_flops_per_paper_carries_the_interval_of_the_median():
    record = _csv_records(make_report([_ten_sample_conv()]), paper=True)[0]
    giga = 2.60112384  # the row's GFLOPs; the paper's CPU FLOPS is 72.9 G/s
    assert float(record["FLOPS / paper"]) == pytest.approx(giga / 0.0345 / 72.9)
    # a longer latency is fewer FLOPS: the interval's low end comes from the median's high one
    assert float(record["FLOPS / paper CI low"]) == pytest.approx(giga / 0.039 / 72.9)
    assert float(record["FLOPS / paper CI high"]) == pytest.approx(giga / 0.030 / 72.9)
    md = render(make_report([_ten_sample_conv()]), "md", paper=True)
    assert "1.03 \\[0.915, 1.19\\]" in md and "CI low" not in md


def test_a_ratio_without_an_interval_leaves_its_bounds_empty(hand_report):
    conv = _csv_records(hand_report, paper=True)[0]  # 5 samples: no interval of the median
    assert float(conv["FLOPS / paper"]) > 0 and conv["FLOPS / paper CI low"] == conv["FLOPS / paper CI high"] == ""


def _fasternet_t0_row(samples: list[float]) -> Row:
    model = resolve_model("fasternet_t0")
    side = model.input_resolution
    workload = Workload("fasternet_t0", Shape(3, side, side), 1, tuple(model.defaults.items()), kind="model",
                        fuse_bn=True)
    return Row(workload, params=3_900_000, flops_unfused=340_000_000, flops_fused=340_000_000, flops=340_000_000,
               samples_s=samples)


def test_latency_per_paper_carries_the_interval():
    report = make_report([_fasternet_t0_row([0.010 + i / 10_000 for i in range(10)])])  # 10.0..10.9 ms
    report.command = "model"
    record = _csv_records(report, paper=True)[0]  # the paper's FasterNet-T0 on the CPU: 9.2 ms
    assert float(record["Latency / paper"]) == pytest.approx(10.45 / 9.2)
    assert (float(record["Latency / paper CI low"]), float(record["Latency / paper CI high"])) == pytest.approx(
        (10.0 / 9.2, 10.9 / 9.2))


def test_throughput_per_paper_carries_the_interval():
    report = make_report([_fasternet_t0_row([0.010 + i / 10_000 for i in range(10)])])
    report.command = "model"
    report.execution = replace(report.execution, device="cuda", batch=32,
                               runtime_options=(("mode", "throughput"), ("tf32", False)))
    record = _csv_records(report, paper=True)[0]  # the paper's FasterNet-T0 on the GPU: 6807 images/s
    assert float(record["Throughput / paper"]) == pytest.approx(32 / 0.01045 / 6807)
    assert (float(record["Throughput / paper CI low"]), float(record["Throughput / paper CI high"])) == pytest.approx(
        (32 / 0.0109 / 6807, 32 / 0.0100 / 6807))


# --- compare: helpers ----------------------------------------------------------------------------------

def _samples(seed: int, factor: float = 1.0, n: int = 60, median: float = 0.010) -> list[float]:
    """``n`` log-normal samples around ``median`` × ``factor`` (5 % spread, as a quiet machine's)."""
    return (np.random.default_rng(seed).lognormal(np.log(median * factor), 0.05, n)).tolist()


def _row(name: str, samples: list[float], shape: Shape = Shape(96, 56, 56), layers: int = 10, rounds: int = 8,
         **params) -> Row:
    """A row whose samples, in order, came from ``rounds`` timing rounds of (nearly) equal size."""
    parts = np.array_split(np.arange(len(samples)), max(min(rounds, len(samples)), 1))
    return Row(Workload(name, shape, layers, tuple(params.items())), samples_s=samples,
               round_sizes=[len(part) for part in parts])


def _round_samples(seed: int, factor: float = 1.0, rounds: int = 8, size: int = 50, median: float = 0.010
                   ) -> list[float]:
    """``rounds`` rounds of ``size`` samples as a run's worker processes give them: each round's
    median moved by its own log-normal offset (5 % spread: memory layout, machine state), its samples
    spread 2 % around that, so that the rounds differ more than the samples within one."""
    rng = np.random.default_rng(seed)
    offsets = rng.lognormal(0, 0.05, rounds)
    return rng.lognormal(np.log(median * factor * offsets)[:, None], 0.02, (rounds, size)).ravel().tolist()


def _report(rows: list[Row], **execution) -> Report:
    report = make_report(rows)
    report.execution = replace(report.execution, **execution)
    return report


def _verdicts(comparison) -> list[tuple[str, str]]:
    return [(pair.workload.name, pair.verdict) for pair in comparison.pairs]


def _save(tmp_path, name: str, report: Report):
    path = tmp_path / name
    path.write_text(report.to_json())
    return path


# --- pairing by workload ---------------------------------------------------------------------------------

def test_reordered_rows_pair_by_workload():
    base = _report([_row("conv", _samples(1)), _row("pconv", _samples(2)), _row("dwconv", _samples(3))])
    new = _report([_row("dwconv", _samples(4, 0.8)), _row("conv", _samples(5, 1.0)), _row("pconv", _samples(6, 1.2))])
    comparison = compare_reports(base, new)
    assert _verdicts(comparison) == [("conv", NO_CHANGE), ("pconv", SLOWER), ("dwconv", FASTER)]
    ratios = {pair.workload.name: pair.ratio for pair in comparison.pairs}
    assert ratios == pytest.approx({"conv": 1.0, "pconv": 1.2, "dwconv": 0.8}, rel=0.03)
    for pair in comparison.pairs:  # each side is its own report's row
        assert pair.base in base.rows and pair.new in new.rows and pair.base.workload == pair.new.workload


def test_the_issues_example_is_never_paired_by_position():
    """benchmarks/compare_runs.py (which compare replaced) paired conv 192x28x28 with the other run's first
    row, a dwconv."""
    shape = Shape(192, 28, 28)
    base = _report([_row("conv", _samples(1, 20), shape), _row("dwconv", _samples(2), shape)])
    new = _report([_row("dwconv", _samples(3), shape)])
    comparison = compare_reports(base, new)
    assert _verdicts(comparison) == [("conv", ONLY_BASE), ("dwconv", NO_CHANGE)]
    assert comparison.pairs[0].ratio is None and comparison.pairs[1].ratio == pytest.approx(1.0, rel=0.03)


def test_partial_overlap_lists_the_rows_of_one_report_as_such():
    base = _report([_row("conv", _samples(1)), _row("pconv", _samples(2))])
    new = _report([_row("gconv", _samples(3)), _row("pconv", _samples(4))])
    comparison = compare_reports(base, new)
    assert _verdicts(comparison) == [("conv", ONLY_BASE), ("pconv", NO_CHANGE), ("gconv", ONLY_NEW)]
    md = render_comparison(comparison, "md")
    assert "only in BASE" in md and "only in NEW" in md


def test_other_parameters_or_shapes_are_other_workloads():
    base = _report([_row("pconv", _samples(1), ratio=0.25), _row("conv", _samples(2), Shape(96, 56, 56))])
    new = _report([_row("pconv", _samples(3), ratio=0.5), _row("conv", _samples(4), Shape(192, 28, 28))])
    assert [pair.verdict for pair in compare_reports(base, new).pairs] == [ONLY_BASE, ONLY_BASE, ONLY_NEW, ONLY_NEW]


def test_a_workload_held_twice_pairs_first_with_first():
    base = _report([_row("conv", _samples(1)), _row("conv", _samples(2, 2.0))])
    new = _report([_row("conv", _samples(3)), _row("conv", _samples(4, 2.0))])
    assert [pair.ratio for pair in compare_reports(base, new).pairs] == pytest.approx([1.0, 1.0], rel=0.03)


def test_checkpoints_pair_by_file_name():
    def model(weights: str) -> Row:
        return Row(Workload("fasternet_t0", Shape(3, 224, 224), 1, (("ratio", 0.25),), kind="model",
                            weights=weights, fuse_bn=True), samples_s=_samples(1), round_sizes=[10] * 6)

    base, new = _report([model("/home/a/t0.pth")]), _report([model("C:\\ckpt\\t0.pth")])
    base.command = new.command = "model"
    assert _verdicts(compare_reports(base, new)) == [("fasternet_t0", NO_CHANGE)]


# --- the verdict ------------------------------------------------------------------------------------------

def test_identical_distributions_are_no_significant_change():
    pair = compare_reports(_report([_row("conv", _samples(1, n=500))]),
                           _report([_row("conv", _samples(2, n=500))])).pairs[0]
    assert pair.verdict == NO_CHANGE and pair.p_value > ALPHA
    assert pair.ratio_ci[0] < 1 < pair.ratio_ci[1]


@pytest.mark.parametrize("factor, verdict", [(1.10, SLOWER), (0.90, FASTER)])
def test_ten_per_cent_apart_is_slower_or_faster(factor, verdict):
    pair = compare_reports(_report([_row("conv", _samples(1))]), _report([_row("conv", _samples(2, factor))])).pairs[0]
    assert pair.verdict == verdict and pair.p_value < 0.001
    assert pair.ratio_ci[0] < pair.ratio < pair.ratio_ci[1]
    assert pair.ratio_ci[0] < factor < pair.ratio_ci[1]


def test_a_significant_test_alone_makes_no_verdict():
    """Every round of NEW moved its middle sample up 5 % (2.0 -> 2.1) and left the 1s and 3s around it:
    the rounds' medians differ as much as they can (p = 2/12870), but a resample's pooled median
    lands on a 1 or a 3 as often as not, so the medians' interval holds 1, and only both together
    make a verdict."""
    base = [1.0, 1.0, 2.0, 3.0, 3.0] * 8
    new = [1.0, 1.0, 2.1, 3.0, 3.0] * 8
    pair = compare_rows(_row("conv", base), _row("conv", new))
    assert pair.p_value == pytest.approx(2 / 12870) and pair.ratio_ci[0] < 1 < pair.ratio_ci[1]
    assert pair.ratio == pytest.approx(1.05) and pair.verdict == NO_CHANGE


def test_rounds_that_differ_by_offsets_are_no_significant_change():
    """The issue's two runs of the same code: 20 rows whose rounds each sit at their own offset, drawn
    alike on both sides. Taken sample by sample, as if independent, most rows looked significantly
    changed; taken round by round, about ALPHA of them may (1 of 20 expected)."""
    pairs = [compare_rows(_row("conv", _round_samples(seed)), _row("conv", _round_samples(seed + 100)))
             for seed in range(20)]
    significant = [pair.ratio for pair in pairs if pair.verdict != NO_CHANGE]
    assert len(significant) <= 2, significant
    assert all(pair.ratio_ci[0] < pair.ratio < pair.ratio_ci[1] for pair in pairs)


def test_a_shift_of_all_rounds_by_20_per_cent_is_slower():
    base = _row("conv", _round_samples(1))
    pair = compare_rows(base, _row("conv", _round_samples(2, 1.2)))
    assert pair.verdict == SLOWER and pair.p_value < 0.001 and pair.slower_by_more_than(0.10)
    assert 1 < pair.ratio_ci[0] < 1.2 < pair.ratio_ci[1]
    assert compare_rows(_row("conv", _round_samples(2, 1.2)), base).verdict == FASTER


def test_the_comparison_is_the_same_every_time():
    def compared():
        return [(pair.ratio, pair.ratio_ci, pair.p_value) for pair in compare_reports(
            _report([_row("conv", _round_samples(1)), _row("pconv", _round_samples(2))]),
            _report([_row("conv", _round_samples(3)), _row("pconv", _round_samples(4, 1.1))])).pairs]

    assert compared() == compared()
    rounds = [np.asarray(_round_samples(5)[i:i + 50]) for i in range(0, 400, 50)]
    assert hierarchical_ratio_interval(rounds, rounds[::-1]) == hierarchical_ratio_interval(rounds, rounds[::-1])
    assert hierarchical_ratio_interval(rounds, rounds, seed=1) != hierarchical_ratio_interval(rounds, rounds, seed=2)


def test_too_few_rounds_give_the_ratio_without_a_verdict():
    pair = compare_rows(_row("conv", _samples(1), rounds=3), _row("conv", _samples(2, 1.5), rounds=MIN_ROUNDS))
    assert (pair.verdict, pair.ratio_ci, pair.p_value) == (TOO_FEW_ROUNDS, None, None)
    assert pair.ratio == pytest.approx(1.5, rel=0.03)
    assert pair.reason == (f"3 rounds in BASE, {MIN_ROUNDS} rounds in NEW; the test on the rounds' medians needs "
                           f"{MIN_ROUNDS} a side (--rounds {MIN_ROUNDS} or more, and --stop-ci 0 so that no row stops "
                           "after 2)")


HOSTILE_ROUND_SIZES = {
    "missing": ([], "BASE has no round sizes (an older report?)"),
    "short": ([10] * 5, "BASE has round sizes that are not counts adding up to its 60 samples"),
    "long": ([10] * 7, "BASE has round sizes that are not counts adding up to its 60 samples"),
    "negative": ([-10, 20, 20, 20, 10, 0], "BASE has round sizes that are not counts"),
    "text": (["10"] * 6, "BASE has round sizes that are not counts"),
    "floats": ([10.0] * 6, "BASE has round sizes that are not counts"),
    "booleans": ([True] * 60, "BASE has round sizes that are not counts"),
    "nested": ([[10]] * 6, "BASE has round sizes that are not counts"),
    "none": (None, "BASE has round sizes that are not counts"),
    "a string": ("10" * 6, "BASE has round sizes that are not counts"),
    "a mapping": ({"a": 60}, "BASE has round sizes that are not counts"),
}


@pytest.mark.parametrize("sizes, says", HOSTILE_ROUND_SIZES.values(), ids=HOSTILE_ROUND_SIZES.keys())
def test_unusable_round_sizes_count_the_samples_as_one_round(sizes, says):
    base = _row("conv", _samples(1))
    base.round_sizes = sizes
    assert [len(part) for part in split_rounds(base, "BASE")[0]] == [60]
    pair = compare_rows(base, _row("conv", _samples(2, 1.5)))
    assert (pair.verdict, pair.ratio_ci, pair.p_value) == (TOO_FEW_ROUNDS, None, None)
    assert pair.ratio == pytest.approx(1.5, rel=0.03)
    assert pair.reason.startswith(says) and "its samples count as one round; 1 round in BASE, 8 rounds in NEW" in (
        pair.reason)


def test_a_saved_report_whose_round_sizes_miss_its_samples_is_compared_without_a_verdict(tmp_path):
    base, new = _report([_row("conv", _samples(1))]), _report([_row("conv", _samples(2))])
    new.rows[0].round_sizes = [8] * 8  # 64 of its 60 samples
    result = invoke(["compare", _save(tmp_path, "a.json", base), _save(tmp_path, "b.json", new), "--format", "csv"])
    assert result.exit_code == 0, result.output
    (record,) = csv.DictReader(io.StringIO(result.stdout))
    assert record["Verdict"] == TOO_FEW_ROUNDS and record["Reason"].startswith(
        "NEW has round sizes that are not counts adding up to its 60 samples: its samples count as one round")


def test_rounds_that_timed_nothing_are_left_out():
    row = _row("conv", [1.0, 2.0, 3.0, 4.0, 5.0])
    row.round_sizes = [2, 0, 3, 0]
    assert [part.tolist() for part in split_rounds(row, "BASE")[0]] == [[1.0, 2.0], [3.0, 4.0, 5.0]]
    assert split_rounds(row, "BASE")[1] is None


def test_too_few_samples_give_the_ratio_without_a_verdict(hand_report):
    pair = compare_reports(hand_report, hand_report).pairs[0]  # 5 samples a side
    assert (pair.verdict, pair.ratio, pair.ratio_ci, pair.p_value) == (TOO_FEW, 1.0, None, None)
    assert pair.reason == f"5 samples; the test and the interval need {MIN_SAMPLES} a side"


def test_rows_either_side_could_not_time_are_shown_as_such():
    failed = _row("gconv", [])
    failed.status, failed.error = "error", "RuntimeError: boom"
    untimed = _row("gconv", [])
    untimed.status = "not timed"
    comparison = compare_reports(_report([failed, _row("conv", [])]), _report([untimed, _row("conv", _samples(1))]))
    assert [(pair.verdict, pair.reason) for pair in comparison.pairs] == [
        (NOT_COMPARED, "BASE error: RuntimeError: boom; NEW not timed"), (NOT_COMPARED, "BASE has no samples")]
    md = render_comparison(comparison, "md")
    assert "- row 1 (gconv 96x56x56): not compared: BASE error: RuntimeError: boom; NEW not timed" in md


# --- the statistics by hand --------------------------------------------------------------------------------

def test_mann_whitney_by_hand():
    # [1, 2, 3] against [4, 5, 6]: U = 0, mean 4.5, variance 3·3·7/12 = 5.25 (no ties)
    assert mann_whitney_p([1, 2, 3], [4, 5, 6]) == pytest.approx(math.erfc((4.5 - 0.5) / math.sqrt(5.25 * 2)))
    assert mann_whitney_p([1, 2, 3], [4, 5, 6]) == pytest.approx(0.0808556, abs=1e-7)  # scipy's 'asymptotic' value
    # [1, 1, 2] against [2, 3, 3]: ranks 1.5 1.5 3.5 | 3.5 5.5 5.5, U = 6.5 - 6 = 0.5; three pairs of ties:
    # variance 9/12 · (7 - 3·(8 - 2)/30) = 4.8
    assert mann_whitney_p([1, 1, 2], [2, 3, 3]) == pytest.approx(math.erfc((4.5 - 0.5 - 0.5) / math.sqrt(4.8 * 2)))
    assert mann_whitney_p([2.0] * 5, [2.0] * 9) == 1.0  # all tied: nothing to tell apart
    assert mann_whitney_p([1, 5, 2, 8], [3, 9, 4]) == mann_whitney_p([3, 9, 4], [1, 5, 2, 8])  # two-sided


def test_the_ratio_interval_is_exact_where_nothing_varies():
    assert hierarchical_ratio_interval([np.full(9, 2.0)] * 4, [np.full(9, 3.0)] * 4) == (1.5, 1.5)
    assert hierarchical_ratio_interval([np.zeros(9)] * 4, [np.ones(9)] * 4) is None  # no ratio to a median of 0


def test_the_rank_test_is_exact_by_hand():
    """Of the 70 splits of 8 values into two groups of 4, 2 are as far apart as 1..4 against 5..8;
    3 against 3 (20 splits) and 3 against 4 (35) can never reach p < 0.05, so a verdict needs 4 rounds a
    side. [1, 1, 2] against [2, 3, 3]: mean ranks 1.5 1.5 3.5 | 3.5 5.5 5.5, rank sum 6.5, mean 10.5; of
    the 20 splits, the two with 1.5 1.5 3.5 and the two with 3.5 5.5 5.5 are as far."""
    assert rank_test_p([1, 2, 3, 4], [5, 6, 7, 8]) == pytest.approx(2 / 70)
    assert rank_test_p([5, 6, 7, 8], [1, 2, 3, 4]) == pytest.approx(2 / 70)
    assert rank_test_p([1, 2, 3], [4, 5, 6]) == pytest.approx(2 / 20)
    assert rank_test_p([1, 2, 3], [4, 5, 6, 7]) == pytest.approx(2 / 35)
    assert 2 / 70 < ALPHA < 2 / 35 and MIN_ROUNDS == 4
    assert rank_test_p([1, 1, 2], [2, 3, 3]) == pytest.approx(4 / 20)
    assert rank_test_p([1, 3, 5, 7], [2, 4, 6, 8]) == pytest.approx(
        sum(abs(sum(split) - 18) >= 2 for split in itertools.combinations(range(1, 9), 4)) / 70)
    assert rank_test_p([2.0] * 5, [2.0] * 9) == 1.0


def test_the_rank_test_takes_the_normal_approximation_beyond_its_exact_limit():
    x, y = _samples(1, n=EXACT_MAX_ROUNDS // 2), _samples(2, 1.02, n=EXACT_MAX_ROUNDS // 2 + 1)
    assert rank_test_p(x, y) == mann_whitney_p(x, y)
    assert rank_test_p(x[:-1], y) == pytest.approx(mann_whitney_p(x[:-1], y), abs=0.01)  # exact, close to it


# --- protocols ------------------------------------------------------------------------------------------

PROTOCOLS = {
    "batch": ({"batch": 32}, "BASE is batch 1, NEW is batch 32"),
    "threads": ({"threads": 2, "cores": (0, 1)}, "BASE ran 1 thread, NEW ran 2 threads"),
    "runtime": ({"runtime": "onnxruntime"}, "BASE ran torch, NEW ran onnxruntime"),
    "dtype": ({"dtype": "fp16"}, "BASE computed in fp32, NEW computed in fp16"),
    "device": ({"device": "cuda"}, "BASE ran on cpu, NEW ran on cuda"),
    "option": ({"runtime_options": (("channels_last", True),)},
               "BASE has no channels_last option, NEW has channels_last=True"),
}


@pytest.mark.parametrize("changes, says", PROTOCOLS.values(), ids=PROTOCOLS.keys())
def test_reports_of_other_protocols_are_a_one_line_error(tmp_path, changes, says):
    rows = [_row("conv", _samples(1))]
    result = invoke(["compare", _save(tmp_path, "a.json", _report(rows)), _save(tmp_path, "b.json",
                                                                                  _report(rows, **changes))])
    assert result.exit_code == 2 and "Traceback" not in result.output and result.stdout == ""
    (line,) = stderr_lines(result)
    assert " compare: error: Invalid value for 'NEW': " in line and f"protocol: {says}" in line, line
    assert line.endswith("; compare runs of the same protocol"), line


@pytest.mark.parametrize("base, new, says", [
    ({"MALLOC_MMAP_THRESHOLD_": "4294967296"}, {}, "BASE ran with MALLOC_MMAP_THRESHOLD_=4294967296, NEW ran without "
                                                   "MALLOC_MMAP_THRESHOLD_"),
    ({"LD_PRELOAD": "libjemalloc.so.2"}, {"LD_PRELOAD": "libtcmalloc.so.4"},
     "BASE ran with LD_PRELOAD=libjemalloc.so.2, NEW ran with LD_PRELOAD=libtcmalloc.so.4"),
])
def test_another_allocator_is_another_protocol(base, new, says):
    reports = []
    for variables in (base, new):
        report = _report([])
        report.environment = {**report.environment, "timing_variables": variables}
        reports.append(report)
    with pytest.raises(ProtocolError, match=f"^{re.escape(says)}$"):
        compare_reports(*reports)


@pytest.mark.parametrize("recorded", [None, ["LD_PRELOAD"], "MALLOC_ARENA_MAX=2", 7, {"OMP_WAIT_POLICY": "active"}],
                         ids=["absent", "a-list", "a-string", "a-number", "not-the-allocators"])
def test_only_a_mapping_of_allocator_variables_is_part_of_the_protocol(recorded):
    report = _report([_row("conv", _samples(1))])
    if recorded is not None:
        report.environment = {**report.environment, "timing_variables": recorded}
    assert _verdicts(compare_reports(report, _report([_row("conv", _samples(2))]))) == [("conv", NO_CHANGE)]


def test_options_that_follow_from_another_runtime_are_not_listed():
    with pytest.raises(ProtocolError, match="^BASE ran torch, NEW ran onnxruntime$"):
        compare_reports(_report([]), _report([], runtime="onnxruntime",
                                             runtime_options=(("opt_level", "all"), ("spinning", True))))


def test_tf32_is_another_precision():
    cuda = {"device": "cuda", "batch": 32}
    with pytest.raises(ProtocolError, match=r"BASE computed in fp32 \(IEEE, no TF32\), NEW computed in fp32 with "
                                            "TF32 convs and matmuls"):
        compare_reports(_report([], runtime_options=(("tf32", False),), **cuda),
                        _report([], runtime_options=(("tf32", True),), **cuda))


def test_speed_neutral_options_cores_and_budget_may_differ():
    base = _report([_row("conv", _samples(1))], device="cuda", runtime_options=(("find_max_batch", False),))
    new = _report([_row("conv", _samples(2))], device="cuda", runtime_options=(("find_max_batch", True),),
                  cores=(1,), seed=7)
    assert _verdicts(compare_reports(base, new)) == [("conv", NO_CHANGE)]


def test_an_ops_report_against_a_model_report_is_refused(hand_report):
    model = make_report([_fasternet_t0_row(_samples(1))])
    model.command = "model"
    with pytest.raises(ProtocolError, match="^BASE is an ops report, NEW is a model report$"):
        compare_reports(hand_report, model)


def test_other_layer_counts_are_another_protocol():
    base = _report([_row("conv", _samples(1), layers=10), _row("pconv", _samples(2), layers=10)])
    new = _report([_row("conv", _samples(3), layers=5), _row("pconv", _samples(4), layers=5)])
    with pytest.raises(ProtocolError, match=r"^BASE stacks 10 layers of conv 96x56x56, NEW 5 \(and 1 more\)$"):
        compare_reports(base, new)


def test_protocol_errors_are_plain_text():
    with pytest.raises(ProtocolError) as caught:
        compare_reports(_report([], runtime_options=(("mode", "\x1b]0;pwned\x07"),)), _report([]))
    assert "\x1b" not in str(caught.value) and "\\x1b]0;pwned\\x07" in str(caught.value)


# --- the command -------------------------------------------------------------------------------------------

@pytest.fixture
def slower_files(tmp_path):
    """conv 10 % slower in NEW; pconv unchanged."""
    base = _report([_row("conv", _samples(1)), _row("pconv", _samples(2))])
    new = _report([_row("pconv", _samples(3)), _row("conv", _samples(4, 1.10))])
    return _save(tmp_path, "base.json", base), _save(tmp_path, "new.json", new)


def test_fail_above_exits_1_on_a_significant_regression_beyond_it(slower_files):
    result = invoke(["compare", *slower_files, "--fail-above", "5%", "--format", "csv"])
    assert result.exit_code == 1, result.output
    (line,) = stderr_lines(result)
    assert line.startswith("flopsbench compare: conv 96x56x56 is significantly slower by more than 5%: NEW / BASE 1.")
    assert [r["Verdict"] for r in csv.DictReader(io.StringIO(result.stdout))] == [SLOWER, NO_CHANGE]


@pytest.mark.parametrize("args", [[], ["--fail-above", "20%"]])
def test_no_regression_beyond_the_threshold_exits_0(slower_files, args):
    result = invoke(["compare", *slower_files, *args, "--format", "md"])
    assert result.exit_code == 0 and stderr_lines(result) == [], result.output
    assert (" 20%: no row is significantly slower by more." in result.stdout) == bool(args)


@pytest.mark.parametrize("text", ["0.05", "5", "-5%", "five%", "5%%", ""])
def test_fail_above_takes_a_percentage(slower_files, text):
    _assert_one_line_error(invoke(["compare", *slower_files, "--fail-above", text]), "--fail-above")


def test_fail_above_reads_percentages():
    assert [parse_percentage(text, "--fail-above") for text in ("5%", " 2.5 % ", "0%", ".5%")] == pytest.approx(
        [0.05, 0.025, 0.0, 0.005])


def test_a_file_that_is_no_report_names_its_argument(slower_files, tmp_path):
    broken = tmp_path / "broken.json"
    broken.write_text("{")
    result = invoke(["compare", slower_files[0], broken])
    assert result.exit_code == 2 and result.stdout == ""
    (line,) = stderr_lines(result)
    assert "'NEW'" in line and "is not JSON" in line, line


def test_writes_the_view_to_a_file(slower_files, tmp_path):
    out = tmp_path / "compare.json"
    assert invoke(["compare", *slower_files, "--format", "json", "-o", out]).exit_code == 0
    data = json.loads(out.read_text())
    assert data["schema"] == "flopsbench.compare" and [row["verdict"] for row in data["rows"]] == [SLOWER, NO_CHANGE]
    assert data["rows"][0]["ratio_ci_low"] < data["rows"][0]["ratio"] < data["rows"][0]["ratio_ci_high"]
    _assert_one_line_error(invoke(["compare", *slower_files, "-o", tmp_path / "no" / "dir.md"]), "--output")


def test_a_view_that_cannot_be_written_is_one_line_and_exit_1(slower_files, tmp_path, monkeypatch):
    def full_disk(path, text):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(flopsbench.cli.options, "write_text", full_disk)  # the writer of every view
    result = invoke(["compare", *slower_files, "-o", tmp_path / "out.md"])
    assert result.exit_code == 1 and "Traceback" not in result.output
    assert stderr_lines(result) == [f"flopsbench compare: error: cannot write {tmp_path / 'out.md'} "
                                    "(No space left on device)"]


# --- golden outputs -------------------------------------------------------------------------------------------

def golden_comparison():
    """Every kind of row: slower, no change, faster, too few samples, too few rounds (an older report's
    row, without round sizes), not compared, one-sided; an option off its default; warnings."""
    failed = _row("gconv", [], groups=16)
    failed.status, failed.error = "error", "RuntimeError: boom"
    noisy = _row("pwconv", _samples(9, n=30))
    noisy.warnings = ["noisy: IQR is 12% of the median"]
    older = _row("pwconv", _samples(7), Shape(192, 28, 28))
    older.round_sizes = []
    base = _report([_row("conv", _samples(1)), _row("pconv", _samples(2), ratio=0.5), noisy,
                    _row("dwconv", [0.001, 0.002, 0.003]), older, _row("gconv", _samples(5), groups=16),
                    _row("conv", _samples(6), Shape(768, 7, 7))])
    new = _report([_row("pconv", _samples(12), ratio=0.5), _row("conv", _samples(11, 1.10)),
                   _row("pwconv", _samples(19, 0.9, n=30)), _row("dwconv", [0.001, 0.002, 0.003]), failed,
                   _row("pwconv", _samples(17), Shape(192, 28, 28)), _row("conv", _samples(13), Shape(16, 8, 8))])
    return compare_reports(base, new, "runs/base.json", "runs/new.json")


@pytest.mark.parametrize("fmt, name", [("md", "compare.md"), ("csv", "compare.csv"), ("latex", "compare.tex"),
                                       ("json", "compare.json"), ("table", "compare.txt")])
def test_golden(golden, fmt, name):
    golden(name, render_comparison(golden_comparison(), fmt, 0.05))


def test_golden_values_by_hand():
    """What the golden files hold, checked apart from them."""
    verdicts = [(pair.workload.name, pair.verdict) for pair in golden_comparison().pairs]
    assert verdicts == [("conv", SLOWER), ("pconv", NO_CHANGE), ("pwconv", FASTER), ("dwconv", TOO_FEW),
                        ("pwconv", TOO_FEW_ROUNDS), ("gconv", NOT_COMPARED), ("conv", ONLY_BASE), ("conv", ONLY_NEW)]
    record = next(csv.DictReader(io.StringIO(render_comparison(golden_comparison(), "csv"))))
    assert float(record["BASE median [ms]"]) == pytest.approx(np.median(_samples(1)) * 1e3)
    assert float(record["NEW / BASE"]) == pytest.approx(np.median(_samples(11, 1.10)) / np.median(_samples(1)))


def test_every_view_says_how_many_verdicts_chance_alone_could_give():
    """Two same-code runs of 20 rows back to back gave 2 verdicts on the development VM; each of the
    golden comparison's three tested rows errs at most ALPHA of the time: 0.15 of 3 on average."""
    comparison = golden_comparison()
    assert [pair.verdict for pair in comparison.tested()] == [SLOWER, NO_CHANGE, FASTER]
    assert len(comparison.verdicts()) == 2 and comparison.chance_verdicts() == pytest.approx(3 * ALPHA)
    line = "By chance: 2 of the 3 row(s) tested are faster or slower."
    for fmt in ("md", "latex", "table"):
        assert line in " ".join(render_comparison(comparison, fmt).split()), fmt
    assert json.loads(render_comparison(comparison, "json"))["chance"] == {
        "rows_tested": 3, "verdicts": 2, "verdicts_by_chance_at_most": pytest.approx(0.15)}
    assert "By chance" not in render_comparison(compare_reports(_report([]), _report([])), "md")


def test_views_share_one_signature():
    comparison = golden_comparison()
    for fmt, export in VIEWS.items():
        stream = io.StringIO()
        export(comparison, stream, None)
        assert stream.getvalue() == render_comparison(comparison, fmt)


def test_empty_reports_compare_to_an_empty_table():
    for fmt in VIEWS:
        assert render_comparison(compare_reports(_report([]), _report([])), fmt)


# --- hostile text ---------------------------------------------------------------------------------------------

def _hostile_comparison(text: str):
    base, new = hostile_report(text), hostile_report(text)
    base.rows[0].samples_s, new.rows[0].samples_s = _samples(1), _samples(2, 1.2)
    return compare_reports(base, new, text, text)


@CASES
def test_table_sends_no_control_sequence(text):
    stream = Terminal()
    compare_views.export_table(_hostile_comparison(text), stream, 0.05)
    assert controls(stream.getvalue()) == []


@CASES
def test_markdown_keeps_its_structure(text):
    md = render_comparison(_hostile_comparison(text), "md", 0.05)
    assert len(cell_counts(md.splitlines())) == 1, md
    markdown_tokens(md)
    assert markdown_text(text) in md


@CASES
def test_latex_executes_nothing_from_the_reports(text):
    tex = render_comparison(_hostile_comparison(text), "latex", 0.05)
    assert _commands(tex) <= GENERATED
    assert all(not line or line.startswith(("% ", "\\")) or " & " in line for line in tex.splitlines())


@CASES
def test_csv_has_one_line_per_row_and_no_formula(text):
    comparison = _hostile_comparison(text)
    out = render_comparison(comparison, "csv")
    assert len(out.splitlines()) == 1 + len(comparison.pairs)
    records = list(csv.DictReader(io.StringIO(out)))
    assert records[0]["Operator"] == csv_text(text)
    for cell in (cell for record in records for cell in record.values()):
        assert not cell.lstrip(" ").startswith(("=", "+", "@")) and cell == plain_text(cell)


@CASES
def test_json_keeps_the_text_exactly(text):
    out = render_comparison(_hostile_comparison(text), "json")
    assert out.isascii() and json.loads(out)["rows"][0]["workload"]["name"] == text
