"""`flopsbench model` through CliRunner: real tiny runs, both FLOP conventions, the breakdown,
the paper's columns, weights, and every user-error path (one line, exit 2, nothing measured)."""

from __future__ import annotations

import csv
import io
import json
import re

import pytest
import torch

import flopsbench.cli.options
import flopsbench.report
from flopsbench.exporters import render
from flopsbench.counting import count_params_without_bn
from flopsbench.paper import published
from flopsbench_zoo import get_model
from tests.test_baselines import with_unavailable_model
from tests.test_cli import invoke, stderr_lines

QUICK = ["--runs", "3", "--warmup", "0", "--rounds", "1"]


@pytest.fixture(scope="module")
def t0_run():
    result = invoke(["model", "fasternet_t0", *QUICK, "--format", "json"])
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def test_model_row_has_both_flop_conventions_at_224(t0_run):
    (row,) = t0_run["rows"]
    assert t0_run["command"] == "model" and row["status"] == "ok"
    assert row["workload"]["kind"] == "model" and row["workload"]["shape"] == [3, 224, 224]
    assert row["workload"]["fuse_bn"] is True
    tab3, tab8 = published()["configs"]["variants"]["T0"]["paper_tab3_flops_G"], 0.34
    assert round(row["flops_unfused"] / 1e9, 2) == tab3 and round(row["flops_fused"] / 1e9, 2) == tab8
    assert row["flops_fused"] < row["flops_unfused"]  # BN's 2 FLOPs per element are gone
    assert row["flops"] == row["flops_fused"]  # the timed model is the fused one
    assert round(row["params_without_bn"] / 1e6, 1) == 3.9
    assert len(row["samples_s"]) == 3 and row["memory_impl"]["read_bytes"] > 0


def test_flops_columns_are_per_image_at_any_batch(t0_run):
    """The paper's tables give FLOPs per image: at batch 2 the table still shows 0.338 / 0.335 G
    (not 0.676), while FLOPS divides the batch's FLOPs by the batch's median; the JSON says which."""
    result = invoke(["model", "fasternet_t0", *QUICK, "--batch", "2", "--paper", "--format", "json"])
    data = json.loads(result.stdout)
    (row,) = data["rows"]
    (one,) = t0_run["rows"]
    assert row["flops_unfused"] == 2 * one["flops_unfused"] and row["per_image"]["flops_unfused"] == one["flops_unfused"]
    assert "per_image" in data["batch_scope"] and "whole batch" in data["batch_scope"]
    assert row["derived"]["flops_per_s"] == pytest.approx(row["flops"] / row["stats"]["median_s"])
    report = flopsbench.report.Report.from_dict(data)
    (record,) = csv.DictReader(io.StringIO(render(report, "csv", paper=True)))
    assert (round(float(record["FLOPs [G] (Tab. 3, unfused)"]), 3), round(float(record["FLOPs [G] (Tab. 8, BN fused)"]), 3),
            record["Paper FLOPs [G]"]) == (0.338, 0.335, "0.34")
    assert float(record["FLOPS [G/s]"]) == pytest.approx(row["flops"] / row["stats"]["median_s"] / 1e9)
    assert "Batch 2: FLOPs (and params) are per image" in render(report, "md")


def test_no_fuse_bn_times_the_unfused_model():
    result = invoke(["model", "fasternet_t0", *QUICK, "--no-fuse-bn", "--format", "json"])
    (row,) = json.loads(result.stdout)["rows"]
    assert row["flops_fused"] is None and row["flops"] == row["flops_unfused"]


def test_markdown_has_paper_columns_and_breakdown():
    result = invoke(["model", "fasternet_t0", *QUICK, "--paper", "--breakdown", "2",
                     "--breakdown-time", "0.01", "--format", "md"])
    assert result.exit_code == 0, result.output
    text = result.stdout
    assert "Paper cpu latency [ms]" in text
    assert re.search(r"\|\s+9\.20 \|", text)  # Table 3: T0 at 9.2 ms on the i9-9900X
    assert "Breakdown of fasternet_t0" in text
    for part in ("patch_embed.proj", "stages.0", "stages.1", "stages.6", "head"):
        assert f"| {part} " in text


def test_breakdown_covers_the_model_flops():
    result = invoke(["model", "fasternet_t0", *QUICK, "--breakdown", "2", "--breakdown-time", "0.01",
                     "--format", "json"])
    (row,) = json.loads(result.stdout)["rows"]
    assert sum(p["flops"] for p in row["breakdown"]) == row["flops"]  # the parts cover the model once
    assert all(p["median_s"] > 0 for p in row["breakdown"] if p["type"] != "Identity")


def test_official_weights_load_and_reach_the_timed_model(tmp_path):
    torch.manual_seed(1)
    model = get_model("fasternet_t0").create()
    with torch.no_grad():
        model.head.bias.fill_(0.5)
    path = tmp_path / "fasternet_t0-epoch.281-val_acc1.71.9180.pth"
    torch.save(model.state_dict(), path)
    result = invoke(["model", "fasternet_t0", *QUICK, "--weights", path, "--paper", "--format", "json"])
    assert result.exit_code == 0, result.output
    (row,) = json.loads(result.stdout)["rows"]
    assert row["workload"]["weights"] == str(path) and row["status"] == "ok"
    assert row["params_without_bn"] == count_params_without_bn(model)


def test_unavailable_baseline_is_an_error_row_not_a_crash(monkeypatch):
    result = invoke(["model", with_unavailable_model(monkeypatch), "fasternet_t0", *QUICK, "--format", "json"])
    assert result.exit_code == 1, result.output  # the report is written; the status says a row failed
    unavailable, t0 = json.loads(result.stdout)["rows"]
    assert unavailable["status"] == "error" and "unavailable" in unavailable["error"]
    assert "neither timm" in unavailable["error"]
    assert t0["status"] == "ok"


@pytest.mark.baselines
def test_timm_model_by_name_runs_at_its_resolution():
    result = invoke(["model", "timm:resnet18", "--resolution", "64", *QUICK, "--format", "json"])
    assert result.exit_code == 0, result.output
    (row,) = json.loads(result.stdout)["rows"]
    assert row["status"] == "ok" and row["workload"]["shape"] == [3, 64, 64]
    assert row["flops_fused"] < row["flops_unfused"]  # resnet's BNs fold too


# --- user errors -----------------------------------------------------------------------------------

@pytest.fixture
def no_measuring(monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError("measured despite invalid options")
    monkeypatch.setattr(flopsbench.cli.options, "run_all", refuse)


def _one_line_error(result, needle: str) -> str:
    assert "Traceback" not in result.output
    assert result.exit_code == 2, (result.exit_code, result.output, result.exception)
    (line,) = stderr_lines(result)
    assert needle in line, line
    assert result.stdout == ""
    return line


def test_unknown_model_suggests_close_names(no_measuring):
    line = _one_line_error(invoke(["model", "fasternet_t9"]), "NAME")
    assert "fasternet_t0" in line and "timm:" in line


def test_ratio_the_model_cannot_take(no_measuring):
    _one_line_error(invoke(["model", "fasternet_t0", "--ratio", "1/3"]), "--ratio")


def test_resolution_the_model_cannot_take(no_measuring):
    line = _one_line_error(invoke(["model", "fasternet_t0", "--resolution", "8"]), "--resolution")
    assert "224" in line


def test_ratio_for_a_model_without_pconv(no_measuring):
    _one_line_error(invoke(["model", "pvt_tiny", "--ratio", "1/4"]), "--ratio")


def test_missing_weights_file(no_measuring, tmp_path):
    _one_line_error(invoke(["model", "fasternet_t0", "--weights", tmp_path / "nope.pth"]), "--weights")


def test_corrupt_weights_file(no_measuring, tmp_path):
    path = tmp_path / "corrupt.pth"
    path.write_bytes(b"this is not a checkpoint")
    _one_line_error(invoke(["model", "fasternet_t0", "--weights", path]), "--weights")


def test_mismatched_weights_file_lists_keys(no_measuring, tmp_path):
    path = tmp_path / "t1.pth"
    torch.save(get_model("fasternet_t1").create().state_dict(), path)
    line = _one_line_error(invoke(["model", "fasternet_t0", "--weights", path]), "--weights")
    assert "shape mismatch" in line and "patch_embed.proj.weight" in line
