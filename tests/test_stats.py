"""Statistics over raw samples, on tiny data worked out by hand."""

from __future__ import annotations

import math

import pytest

from flopsbench.exporters import frame, warning_lines
from flopsbench.report import Report, Row
from flopsbench.sampling import finish_row
from flopsbench.spec import Execution, Shape, Workload
from flopsbench.stats import NOISE_THRESHOLD, OUTLIER_SHARE, noise_warnings, summarize, round_medians


def test_summarize_by_hand():
    s = summarize([1, 2, 3, 4, 100])
    assert s.n == 5
    assert s.median_s == 3
    assert (s.q1_s, s.q3_s, s.iqr_s) == (2, 4, 2)  # numpy linear percentiles
    assert s.mean_s == 22
    assert (s.min_s, s.max_s) == (1, 100)
    # deviations from the mean -21 -20 -19 -18 78: sum of squares 7610, / (n-1) = 1902.5
    assert s.stdev_s == pytest.approx(math.sqrt(1902.5))
    # |x - 3| = 2 1 0 1 97 -> MAD 1; modified z = 0.6745·|x - 3| > 3.5 only for 100
    assert s.mad_s == 1
    assert s.outliers == 1
    assert s.relative_iqr == pytest.approx(2 / 3)
    assert s.noisy


def test_quartiles_interpolate_linearly():
    s = summarize([1, 2, 3, 4])
    assert (s.q1_s, s.median_s, s.q3_s, s.iqr_s) == (1.75, 2.5, 3.25, 1.5)


def test_input_order_does_not_matter():
    assert summarize([100, 3, 1, 4, 2]) == summarize([1, 2, 3, 4, 100])


def test_single_sample():
    s = summarize([0.5])
    assert (s.n, s.median_s, s.iqr_s, s.stdev_s, s.mad_s, s.outliers) == (1, 0.5, 0, 0, 0, 0)


def test_zero_mad_falls_back_to_the_mean_absolute_deviation():
    # |x - 5| = 0 0 0 0 1: MAD 0, mean absolute deviation 0.2 -> z = 1 / (1.253314·0.2) = 3.99 > 3.5
    s = summarize([5, 5, 5, 5, 6])
    assert (s.mad_s, s.outliers) == (0, 1)
    # |x - 5| = 0 0 0 1: mean absolute deviation 0.25 -> z = 1 / (1.253314·0.25) = 3.19: not an outlier
    assert summarize([5, 5, 5, 6]).outliers == 0
    assert summarize([2, 2, 2]).outliers == 0  # both scales 0: no outliers


def test_quantised_samples_are_not_outliers():
    """CUDA events tick in steps: 60 samples at 1.000 ms and 40 at 1.001 ms have MAD 0, and the
    40 are one tick off the median, not outliers: mean absolute deviation 0.0004 ms,
    z = 0.001 / (1.253314·0.0004) = 1.99."""
    s = summarize([1.000e-3] * 60 + [1.001e-3] * 40)
    assert (s.mad_s, s.outliers) == (0, 0)
    assert noise_warnings(s) == []


def test_a_true_outlier_among_quantised_samples_still_counts():
    # mean absolute deviation (39·0.001 + 9) / 100 = 0.09039 ms: 10 ms is z = 9 / (1.253314·0.09039) = 79
    s = summarize([1.000e-3] * 60 + [1.001e-3] * 39 + [10e-3])
    assert (s.mad_s, s.outliers) == (0, 1)


def test_no_samples_raise():
    with pytest.raises(ValueError):
        summarize([])


def test_to_dict_keeps_si_units():
    data = summarize([1, 2, 3, 4, 100]).to_dict()
    assert data["median_s"] == 3 and data["iqr_s"] == 2 and data["outliers"] == 1
    assert all(k.endswith("_s") for k in data if k not in ("n", "outliers", "ci_method"))


def test_noise_warning_names_an_option():
    warnings = noise_warnings(summarize([1, 2, 3, 4, 100]))
    assert len(warnings) == 1  # the outlier rule needs >= 10 samples
    assert "IQR is 67% of the median" in warnings[0]
    assert "--min-time" in warnings[0] or "--cores" in warnings[0]


def test_quiet_samples_give_no_warning():
    # median 1.02, IQR 1.03 - 1.01 = 0.02 (2%), MAD 0.01, no value beyond 3.5 / 0.6745 MADs
    s = summarize([1.00, 1.01, 1.02, 1.03, 1.04])
    assert s.outliers == 0 and not s.noisy
    assert noise_warnings(s) == []


def test_noise_threshold_is_strict():
    # IQR 10.5 - 9.5 = 1 = 10% of the median 10: not above the threshold
    at = summarize([9, 9.5, 10, 10.5, 11])
    assert at.relative_iqr == NOISE_THRESHOLD == 0.10
    assert not at.noisy
    assert summarize([9, 9.4, 10, 10.6, 11]).noisy  # 12%


def test_outlier_warning_needs_ten_samples_and_more_than_the_share():
    # 4×1.00, 4×1.01, 5.0, 6.0: median 1.01, MAD 0.01 -> 2 outliers of 10 (20%); IQR 0.01 is quiet,
    # so the only warning is the outlier one, and it names --min-time.
    s = summarize([1.0] * 4 + [1.01] * 4 + [5.0, 6.0])
    assert (s.n, s.outliers, s.noisy) == (10, 2, False)
    warnings = noise_warnings(s)
    assert len(warnings) == 1 and "2 of 10" in warnings[0] and "--min-time" in warnings[0]
    # 1 outlier of 10 is exactly OUTLIER_SHARE (10%): not above it
    s = summarize([1.0] * 4 + [1.01] * 5 + [5.0])
    assert (s.n, s.outliers, s.noisy) == (10, 1, False)
    assert OUTLIER_SHARE == 0.10 and noise_warnings(s) == []
    # 2 outliers of 9: too few samples to judge
    s = summarize([1.0] * 3 + [1.01] * 4 + [5.0, 6.0])
    assert (s.n, s.outliers, s.noisy) == (9, 2, False)
    assert noise_warnings(s) == []


def test_round_medians_follow_round_sizes():
    samples = [1.0, 3.0, 2.0, 10.0, 20.0, 5.0]
    assert round_medians(samples, [3, 0, 2, 1]) == [2.0, 15.0, 5.0]


def test_drift_between_rounds_is_flagged():
    quiet = summarize([1.0] * 8)
    assert noise_warnings(quiet, [1.0, 1.04]) == []  # 4 % spread: within the threshold
    (warning,) = noise_warnings(quiet, [1.0, 1.0, 1.12])
    assert warning.startswith("drift:") and "12%" in warning and "--min-time" in warning


def test_median_ci_is_the_order_statistics_by_hand():
    from flopsbench.stats import median_ci

    # n = 100: k = floor((100 - 1.96·10) / 2) = 40 -> the 40th smallest and the 40th largest (61st)
    assert median_ci([float(i) for i in range(1, 101)][::-1]) == (40.0, 61.0)
    assert median_ci([float(i) for i in range(1, 11)]) == (1.0, 10.0)  # n = 10: k = floor(1.9) = 1
    assert median_ci([2.0, 1.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0]) == (1.0, 8.0)  # n = 8: k = floor(1.23) = 1
    assert median_ci([1.0] * 7) is None  # n = 7: k = floor(0.91) = 0: too few for an interval
    stats = summarize([float(i) for i in range(1, 101)])
    assert (stats.ci_low_s, stats.ci_high_s) == (40.0, 61.0)


# --- drift over the rounds of a row ----------------------------------------------------------------

def _timed_row(*rounds: list[float]):
    row = Row(Workload("pwconv", Shape(8, 4, 4), 1))
    for samples in rounds:
        row.samples_s.extend(samples)
        row.round_sizes.append(len(samples))
    return row


def test_drift_is_checked_over_the_rounds_with_three_or_more_samples():
    """A short round (here the 2-sample one) no longer hides the drift of the others: 1.0 -> 1.2."""
    row = _timed_row([1.0] * 3, [1.1] * 2, [1.2] * 3)
    finish_row(row, Execution())
    (drift,) = [w for w in row.warnings if w.startswith("drift:")]
    assert "2 timing rounds" in drift and "18%" in drift  # (1.2 - 1.0) / the median 1.1
    assert row.notes == []


def test_rounds_too_short_for_drift_are_a_note_not_a_warning():
    """Four rounds of 2 samples: drift is not checked, and the row says so in a note, which
    leaves its status 'ok' (a warning would make it 'warn')."""
    row = _timed_row([1.0, 1.0], [1.0, 1.0], [1.0, 1.0], [1.0, 1.0])
    finish_row(row, Execution())
    assert row.warnings == []
    assert row.notes == ["drift not checked: rounds of fewer than 3 samples (2 per round); "
                         "raise --min-runs or --runs"]
    report = Report("ops", Execution(), {}, rows=[row])
    assert frame(report)["Status"].tolist() == ["ok"]
    assert warning_lines(report) == [f"row 1 (pwconv 8x4x4): note: {row.notes[0]}"]
    assert Row.from_dict(row.to_dict(batch=1)).notes == row.notes
    # a single round has no drift to check: no note
    single = _timed_row([1.0, 1.0])
    finish_row(single, Execution())
    assert (single.warnings, single.notes) == ([], [])
    # rounds of different sizes, none of them 3 or more: the note gives the range
    uneven = _timed_row([1.0, 1.0], [1.0], [])
    finish_row(uneven, Execution())
    assert "(1 to 2 per round)" in uneven.notes[0]


def test_a_rows_notes_from_json_are_checked_not_trusted():
    data = _timed_row([1.0]).to_dict(batch=1)
    for hostile, kept in [("a string", []), ({"x": 1}, []), ([1, None, "ok", ["x"]], ["ok"]), (None, [])]:
        assert Row.from_dict({**data, "notes": hostile}).notes == kept
    del data["notes"]
    assert Row.from_dict(data).notes == []  # a report from before notes
