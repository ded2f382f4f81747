"""Figures (``flopsbench figure``), rendered headless (matplotlib's Agg through ``Figure``, no
pyplot): every kind as PNG and PDF, one column wide, text of at least 7 pt, naming the reports'
devices and runtimes, report text drawn as it is (no mathtext), and the command's error paths."""

from __future__ import annotations

import io
import json
from dataclasses import replace

import pytest

pytest.importorskip("matplotlib", reason="figures need matplotlib (pip install 'flopsbench[figures]')")

from matplotlib.text import Text  # noqa: E402

from flopsbench import ceilings, figures  # noqa: E402
from flopsbench.ceilings import Ceilings, Sizes  # noqa: E402
from flopsbench.report import Report, Row  # noqa: E402
from flopsbench.spec import Execution, Shape, Workload  # noqa: E402
from tests.conftest import ENVIRONMENT, conv_table1_row, make_report, pconv_custom_row  # noqa: E402
from tests.test_cli import invoke, stderr_lines  # noqa: E402

HOSTILE_CPU = "Evil $\\frac{1}$ CPU\x1b[31m"  # mathtext that would not parse, and a terminal escape


@pytest.fixture(autouse=True)
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("FLOPSBENCH_CACHE", str(tmp_path / "cache"))


def _ops_report(runtime: str = "torch", cpu: str = "Test CPU @ 3.00GHz") -> Report:
    rows = [conv_table1_row(), pconv_custom_row()]
    dwconv = conv_table1_row()
    dwconv.workload = Workload("dwconv", Shape(96, 56, 56), 10, (("kernel_size", 3),))
    dwconv.flops, dwconv.samples_s = 2_709_504, [0.002, 0.0021, 0.0022, 0.0023, 0.0024, 0.0025, 0.0026, 0.0027]
    dwconv.round_sizes = [4, 4]
    report = make_report(rows + [dwconv])
    return replace(report, environment={**ENVIRONMENT, "cpu_model": cpu, "libraries": {runtime: "9.9"}},
                   execution=replace(report.execution, runtime=runtime))


def _model_report() -> Report:
    def model(name: str, gflops: float, ms: float) -> Row:
        return Row(Workload(name, Shape(3, 224, 224), 1, kind="model", fuse_bn=True), flops=int(gflops * 1e9),
                   flops_unfused=int(gflops * 1e9), flops_fused=int(gflops * 1e9),
                   memory_impl={"read_bytes": 10 ** 7, "write_bytes": 10 ** 7, "by_op": {}},
                   samples_s=[ms / 1e3 * (1 + i / 100) for i in range(10)])

    rows = [model("fasternet_t0", 0.34, 12.7), model("fasternet_t1", 0.85, 25.4), model("resnet50", 4.1, 108),
            model("mobilevit_xxs", 0.42, 24.5), model("mobilevit_xs", 1.05, 49.2)]
    return Report(command="model", execution=Execution(), environment={**ENVIRONMENT, "libraries": {"torch": "2.14.1"}},
                  rows=rows, complete=True)


def _ceilings_for(report: Report, peak: float = 100e9, bandwidth: float = 10e9) -> Ceilings:
    listed = ceilings.kernels(Sizes(gemm=1000, conv=(1, 10, 10, 10), stream_bytes=10 ** 9), "fp32")
    samples = {"gemm": [1e9 / peak], "conv": [1.0], "copy": [2e9 / bandwidth], "read": [1.0]}
    record = ceilings.make_record(report.execution, report.environment, listed, samples, {}, [])
    return Ceilings.from_record(json.loads(json.dumps(record)))


def _texts(figure) -> list[Text]:
    figure.draw_without_rendering()
    return [t for t in figure.findobj(Text) if t.get_visible() and t.get_text().strip()]


CASES = {
    "flops": lambda: ([_ops_report(), _ops_report("onnxruntime")], {}),
    "roofline": lambda: ([_ops_report()], {}),
    "models": lambda: ([_model_report()], {}),
    "histogram": lambda: ([_ops_report()], {"row": 3}),
}


@pytest.mark.parametrize("kind", figures.KINDS)
def test_every_figure_renders_headless_one_column_wide_and_names_its_runs(kind, tmp_path):
    reports, options = CASES[kind]()
    figure = figures.make(kind, reports, ceilings=_ceilings_for, **options)
    assert figure.get_size_inches()[0] == pytest.approx(figures.WIDTH_IN)
    texts = _texts(figure)
    assert min(t.get_fontsize() for t in texts) >= figures.MIN_FONT_PT
    shown = "\n".join(t.get_text() for t in texts)
    for report in reports:  # device and runtime (with its version) in a title or legend
        assert figures.describe(report) in shown, shown
    for suffix, magic in (("png", b"\x89PNG\r\n\x1a\n"), ("pdf", b"%PDF-")):
        path = tmp_path / f"{kind}.{suffix}"
        figures.save(figure, path)
        assert path.read_bytes().startswith(magic)
        assert not list(tmp_path.glob(".*.tmp"))  # written in one step, nothing left behind


def test_report_text_is_drawn_as_it_is():
    """A '$...$' in a report (a CPU name from another machine) is not mathtext, which would fail to
    parse or render something else; control characters are shown escaped."""
    report = _ops_report(cpu=HOSTILE_CPU)
    figure = figures.make("histogram", [report], row=1)
    shown = [t.get_text() for t in _texts(figure)]
    assert any("Evil $\\frac{1}$ CPU\\x1b[31m" in text for text in shown), shown
    with figures.style():
        figure.savefig(io.BytesIO(), format="png")  # drawing raises no mathtext error


def test_flops_figure_bars_and_whiskers_by_hand():
    """conv 96x56x56: 2,601,123,840 FLOPs in a 32 ms median = 81.3 GFLOPS; with five samples there
    is no interval (n < 8), so no whisker length."""
    figure = figures.make("flops", [_ops_report()], ceilings=lambda report: None)
    bars = figure.axes[0].patches
    assert bars[0].get_height() == pytest.approx(2_601_123_840 / 0.032 / 1e9)
    assert len(bars) == 3


def test_roofline_places_each_row_at_its_intensity_under_the_roof():
    report = _ops_report()
    figure = figures.make("roofline", [report], ceilings=lambda r: _ceilings_for(r, 100e9, 10e9))
    ax = figure.axes[0]
    points = {(round(line.get_xdata()[0], 3), round(line.get_ydata()[0], 3)) for line in ax.lines
              if line.get_marker() not in ("None", "", None) and len(line.get_xdata()) == 1}
    conv = conv_table1_row()
    assert (round(conv.flops / conv.memory_impl_bytes, 3), round(conv.flops / 0.032 / 1e9, 3)) in points
    roof = next(line for line in ax.lines if len(line.get_xdata()) == 3)
    assert roof.get_ydata()[-1] == pytest.approx(100)  # the peak, GFLOPS
    assert roof.get_xdata()[1] == pytest.approx(10)  # the ridge point, FLOP/B


def test_roofline_without_ceilings_says_how_to_get_them():
    with pytest.raises(figures.FigureError, match="run 'flopsbench ceilings'"):
        figures.make("roofline", [_ops_report()], ceilings=lambda report: None)


# --- the command line -------------------------------------------------------------------------------

@pytest.fixture
def saved(tmp_path):
    paths = {}
    for name, report in (("ops", _ops_report()), ("models", _model_report())):
        paths[name] = tmp_path / f"{name}.json"
        paths[name].write_text(report.to_json())
    return paths


@pytest.mark.parametrize("kind, file, extra", [("flops", "ops", []), ("models", "models", []),
                                               ("histogram", "ops", ["--row", "1"])])
def test_figure_command_writes_the_file(saved, tmp_path, kind, file, extra):
    out = tmp_path / f"{kind}.pdf"
    result = invoke(["figure", kind, saved[file], "-o", out, *extra])
    assert result.exit_code == 0, result.output
    assert out.read_bytes().startswith(b"%PDF-") and f"wrote {out}" in result.stderr


def test_figure_command_takes_ceilings_from_a_file_or_the_cache(saved, tmp_path):
    out = tmp_path / "roofline.png"
    result = invoke(["figure", "roofline", saved["ops"], "-o", out])
    assert result.exit_code == 2 and "no ceilings known" in stderr_lines(result)[0]
    report = _ops_report()
    listed = ceilings.kernels(Sizes(gemm=1000, conv=(1, 10, 10, 10), stream_bytes=10 ** 9), "fp32")
    record = ceilings.make_record(report.execution, report.environment, listed,
                                  {"gemm": [0.01], "conv": [1.0], "copy": [0.2], "read": [1.0]}, {}, [])
    given = tmp_path / "ceilings.json"
    given.write_text(json.dumps(record))
    assert invoke(["figure", "roofline", saved["ops"], "-o", out, "--ceilings", given]).exit_code == 0
    ceilings.save(record)
    assert invoke(["figure", "roofline", saved["ops"], "-o", out]).exit_code == 0
    assert out.read_bytes().startswith(b"\x89PNG")


@pytest.mark.parametrize("args, option", [
    (["figure", "pie", "{ops}", "-o", "{out}.png"], "KIND"),
    (["figure", "flops", "{ops}", "-o", "{out}.jpg"], "--output"),
    (["figure", "histogram", "{ops}", "-o", "{out}.png"], "--row"),
    (["figure", "histogram", "{ops}", "{ops}", "-o", "{out}.png", "--row", "1"], "--row"),
    (["figure", "histogram", "{ops}", "-o", "{out}.png", "--row", "9"], "--row"),
    (["figure", "flops", "{ops}", "-o", "{out}.png", "--row", "1"], "--row"),
    (["figure", "flops", "{models}", "-o", "{out}.png"], "FILE"),
])
def test_figure_command_errors_are_one_line(saved, tmp_path, args, option):
    args = [a.format(ops=saved["ops"], models=saved["models"], out=tmp_path / "figure") for a in args]
    result = invoke(args)
    assert result.exit_code == 2, result.output
    lines = stderr_lines(result)
    assert len(lines) == 1 and option in lines[0] and "Traceback" not in result.output, lines
    assert not list(tmp_path.glob("figure*"))


def test_without_matplotlib_the_command_says_how_to_install_it(saved, tmp_path, monkeypatch):
    monkeypatch.setattr(figures, "matplotlib_missing", lambda: "figures need matplotlib, an optional extra: "
                                                                "pip install 'flopsbench[figures]'")
    result = invoke(["figure", "flops", saved["ops"], "-o", tmp_path / "f.png"])
    assert result.exit_code == 1 and "pip install 'flopsbench[figures]'" in result.stderr
