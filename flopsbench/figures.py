"""Figures of saved reports, for papers (PDF) and READMEs (PNG), made with matplotlib (an optional
extra: ``pip install 'flopsbench[figures]'``), imported only when a figure is made.

- ``flops``: FLOPS per operator and feature map, one panel per report (device and runtime): the
  paper's Table 1 as bars, the 95 % confidence interval of each median as whiskers;
- ``roofline``: the measured ceilings of each report's machine (``flopsbench ceilings``) and each
  row's point, its FLOPS against its arithmetic intensity (Williams, Waterman and Patterson, 2009);
- ``models``: latency (throughput on a GPU) against FLOPs per image, one line per model family
  (the FasterNet paper's Figs. 1 and 7, on the reports' hardware);
- ``histogram``: one row's samples, stacked by timing round, with the median and its interval,
  for diagnosing noise and drift.

Every figure is one column wide (3.5 in) with text of at least 7 pt, and names the devices and
runtimes of its reports. FLOPs are fvcore's, 1 multiply-add = 1 FLOP. Text taken from a report is
drawn as plain text: no mathtext (``$...$``), no TeX. Headless: figures are made with
``matplotlib.figure.Figure``, never pyplot, so no display or GUI backend is involved."""

from __future__ import annotations

import contextlib
import math
from typing import Callable, Iterator, Sequence

from flopsbench import __version__
from flopsbench.ceilings import Ceilings, for_report
from flopsbench.escaping import plain_text
from flopsbench.output import staged
from flopsbench.report import Report, Row, per_image

KINDS = ("flops", "roofline", "models", "histogram")
FORMATS = ("pdf", "png", "svg")
WIDTH_IN = 3.5  # one column of a two-column paper
MIN_FONT_PT = 7
STYLE = {
    "font.size": MIN_FONT_PT, "axes.titlesize": MIN_FONT_PT, "axes.labelsize": MIN_FONT_PT,
    "xtick.labelsize": MIN_FONT_PT, "ytick.labelsize": MIN_FONT_PT, "legend.fontsize": MIN_FONT_PT,
    "legend.title_fontsize": MIN_FONT_PT, "figure.titlesize": MIN_FONT_PT + 0.5,
    "text.usetex": False, "text.parse_math": False,  # a '$' in a host or model name stays a '$'
    "pdf.fonttype": 42, "ps.fonttype": 42,  # TrueType in PDFs: editable, and accepted by paper checkers
    "axes.linewidth": 0.6, "lines.linewidth": 1.0, "lines.markersize": 4, "patch.linewidth": 0.4,
    "xtick.major.width": 0.6, "ytick.major.width": 0.6, "xtick.minor.width": 0.4, "ytick.minor.width": 0.4,
    "axes.spines.top": False, "axes.spines.right": False, "legend.frameon": False, "axes.grid": True,
    "grid.linewidth": 0.3, "grid.alpha": 0.5, "savefig.dpi": 300, "errorbar.capsize": 1.5,
    "figure.constrained_layout.h_pad": 0.02, "figure.constrained_layout.w_pad": 0.02,
}
METRIC_LABEL = {"latency": "latency [ms] (median)", "throughput": "throughput [images/s]"}


class FigureError(ValueError):
    """Why a figure cannot be made from the reports given (a one-line message)."""


def matplotlib_missing() -> str | None:
    """Why figures cannot be made here (matplotlib not installed), or None."""
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        return "figures need matplotlib, an optional extra: pip install 'flopsbench[figures]'"
    return None


@contextlib.contextmanager
def style() -> Iterator[None]:
    """matplotlib's settings for flopsbench's figures, for the block (a figure reads them when made and saved)."""
    import matplotlib

    with matplotlib.rc_context(STYLE):
        yield


def make(kind: str, reports: Sequence[Report], row: int | None = None,
         ceilings: Callable[[Report], Ceilings | None] | None = None):
    """The ``kind`` figure of ``reports`` (a matplotlib Figure). ``row`` (1-based) is the histogram's;
    ``ceilings`` finds a report's ceilings (default: ``flopsbench.ceilings.for_report``)."""
    find = ceilings or (lambda report: for_report(report.environment, report.execution))
    with style():
        if kind == "flops":
            return flops_figure(reports, find)
        if kind == "roofline":
            return roofline_figure(reports, find)
        if kind == "models":
            return models_figure(reports)
        if kind == "histogram":
            if len(reports) != 1 or row is None:
                raise FigureError("a histogram is of one row of one report: give one FILE and --row N")
            return histogram_figure(reports[0], row)
    raise FigureError(f"{kind!r} is not one of {', '.join(KINDS)}")


def save(figure, path) -> None:
    """Write ``figure`` to ``path`` in the format its suffix names (pdf, png or svg), in one step,
    without a creation date (the same figure makes the same file)."""
    fmt = path.suffix.lower().lstrip(".")
    if fmt not in FORMATS:
        raise FigureError(f"{path.name}: name a .pdf (papers), .png (READMEs) or .svg file")
    metadata = {"pdf": {"Creator": f"flopsbench {__version__}", "CreationDate": None},
                "png": {"Software": f"flopsbench {__version__}"},
                "svg": {"Creator": f"flopsbench {__version__}", "Date": None}}[fmt]
    with style(), staged(path) as tmp:
        figure.savefig(tmp, format=fmt, metadata=metadata)


# ---------------------------------------------------------------- what the figures say of a report

def describe(report: Report) -> str:
    """The device and runtime a report ran on, e.g. 'torch 2.14.1, cpu: AMD EPYC, 1 thread'."""
    env, ex = report.environment, report.execution
    libraries = env.get("libraries") if isinstance(env.get("libraries"), dict) else {}
    version = libraries.get(ex.runtime)
    runtime = f"{ex.runtime} {version}" if isinstance(version, str) else ex.runtime
    if ex.device == "cuda":
        where = f"{env.get('gpu_name', 'GPU')}, {ex.option('mode', 'throughput')}"
    else:
        where = f"{env.get('cpu_model', 'CPU')}, {ex.threads} thread{'s' if ex.threads > 1 else ''}"
    batch = f", batch {ex.batch}" if ex.batch > 1 else ""
    return plain_text(f"{runtime}, {ex.device}: {where}{batch}")


def _timed(row: Row) -> bool:
    return row.status == "ok" and bool(row.samples_s) and bool(row.flops)


def _label(row: Row) -> str:
    return plain_text(row.workload.name)


def family(name: str) -> str:
    """A model's family, its name up to the first '_' (fasternet_t0 -> fasternet, swin_tiny_... -> swin)."""
    return name.split("_", 1)[0]


def _colors(names: Sequence[str]) -> dict[str, object]:
    """A distinct colour per name, in order (tab10, or tab20 beyond ten)."""
    import matplotlib

    palette = matplotlib.colormaps["tab10" if len(names) <= 10 else "tab20"]
    return {name: palette(index % palette.N) for index, name in enumerate(names)}


def _unique(items) -> list:
    return list(dict.fromkeys(items))


MARKERS = ("o", "s", "^", "D", "v", "P", "X", "<", ">", "*")


def _plain_log_axes(ax) -> None:
    """Tick labels of both log axes as plain numbers (0.2, 1, 10), not matplotlib's mathtext powers
    of ten (mathtext is off: report text is drawn as it is); minor ticks at 2 and 5 are labelled
    where an axis spans at most 2.5 decades."""
    from matplotlib.ticker import Formatter

    class PlainLog(Formatter):
        def __init__(self, minor: bool):
            self.minor = minor

        def __call__(self, x, pos=None) -> str:
            if not x > 0:
                return ""
            if self.minor:
                low, high = sorted(self.axis.get_view_interval())
                mantissa = round(x / 10 ** math.floor(math.log10(x) + 1e-9), 6)
                if low <= 0 or math.log10(high / low) > 2.5 or mantissa not in (2, 5):
                    return ""
            return f"{x:g}"

    for axis in (ax.xaxis, ax.yaxis):
        if axis.get_scale() == "log":
            axis.set_major_formatter(PlainLog(minor=False))
            axis.set_minor_formatter(PlainLog(minor=True))


def _interval(row: Row) -> tuple[float, float, float] | None:
    """(median, low, high) latency of a row in seconds; low/high the median's 95 % interval (the
    median itself where there are too few samples for one)."""
    stats = row.stats
    if stats is None or stats.median_s <= 0:
        return None
    low = stats.ci_low_s if stats.ci_low_s else stats.median_s
    high = stats.ci_high_s if stats.ci_high_s else stats.median_s
    return stats.median_s, low, high


def _rate_with_whiskers(amount: float, row: Row) -> tuple[float, float, float] | None:
    """amount / median, and how far below and above it the median's interval reaches."""
    interval = _interval(row)
    if interval is None or not interval[1] > 0:
        return None
    median, low, high = interval
    rate = amount / median
    return rate, rate - amount / high, amount / low - rate


# ---------------------------------------------------------------- the figures

def flops_figure(reports: Sequence[Report], ceilings: Callable[[Report], Ceilings | None]):
    """Bars of FLOPS per operator (groups) and feature map (bars), one panel per report; whiskers
    the 95 % interval of the median; the machine's peak as a dashed line where its ceilings are known."""
    from matplotlib.figure import Figure

    panels = [r for r in reports if any(row.workload.kind == "operator" and _timed(row) for row in r.rows)]
    if not panels:
        raise FigureError("no timed operator rows: the flops figure is of 'flopsbench ops' reports")
    shapes = _unique(str(row.workload.shape) for r in panels for row in r.rows if row.workload.kind == "operator")
    colors = _colors(shapes)
    highest = [max(row.flops / row.stats.median_s for row in r.rows if row.workload.kind == "operator" and _timed(row))
               for r in panels]
    figure = Figure(figsize=(WIDTH_IN, 0.6 + 1.5 * len(panels)), layout="constrained")
    # one scale for all panels unless their speeds differ too much to read on it (a GPU beside a CPU)
    axes = figure.subplots(len(panels), 1, squeeze=False, sharey=max(highest) < 4 * min(highest))[:, 0]
    width, peaks = 0.8 / len(shapes), False
    for ax, report in zip(axes, panels):
        rows = [row for row in report.rows if row.workload.kind == "operator" and _timed(row)]
        operators = _unique(_label(row) for row in rows)
        for row in rows:
            bar = _rate_with_whiskers(row.flops / 1e9, row)
            if bar is None:
                continue
            x = operators.index(_label(row)) + (shapes.index(str(row.workload.shape)) - (len(shapes) - 1) / 2) * width
            ax.bar(x, bar[0], width, color=colors[str(row.workload.shape)], yerr=[[bar[1]], [bar[2]]],
                   error_kw={"elinewidth": 0.6, "capthick": 0.6}, zorder=2)
        roof = ceilings(report)
        if roof is not None:
            peaks = True
            ax.axhline(roof.peak_flops_per_s / 1e9, color="0.3", linestyle="--", linewidth=0.8, zorder=1)
        ax.set_xticks(range(len(operators)), operators)
        ax.set_ylabel("GFLOPS (multiply-adds)")
        ax.set_title(describe(report), loc="left")
        ax.grid(axis="x", visible=False)
        ax.set_axisbelow(True)
    handles, labels = [_patch(colors[shape]) for shape in shapes], list(shapes)
    if peaks:
        from matplotlib.lines import Line2D

        handles.append(Line2D([], [], color="0.3", linestyle="--", linewidth=0.8))
        labels.append("measured peak")
    layers = _unique(row.workload.layers for r in panels for row in r.rows if row.workload.kind == "operator")
    stacked = f", {layers[0]} stacked layers" if len(layers) == 1 else ""
    figure.legend(handles, labels, loc="outside upper center", ncols=min(4 if len(labels) <= 4 else 3, len(labels)),
                  title=f"feature map (C×H×W){stacked}", handlelength=1, columnspacing=1)
    axes[-1].set_xlabel("whiskers: 95 % confidence interval of the median")
    return figure


def _patch(color):
    from matplotlib.patches import Patch

    return Patch(facecolor=color)


def roofline_figure(reports: Sequence[Report], ceilings: Callable[[Report], Ceilings | None]):
    """Log-log: each report's roof, min(peak, bandwidth × intensity), and each timed row's point
    (its FLOPS at its arithmetic intensity: FLOPs / the bytes PyTorch's eager kernels read and
    write), coloured by operator (model family), a marker per report."""
    from matplotlib.figure import Figure
    from matplotlib.lines import Line2D

    found = []
    for report in reports:
        roof = ceilings(report)
        if roof is None:
            raise FigureError(f"no ceilings known for the report of {describe(report)}: run 'flopsbench "
                              "ceilings' with its device, runtime, threads, cores and dtype on its machine, or pass "
                              "--ceilings FILE")
        found.append(roof)
    points = [[(row, row.flops / row.memory_impl_bytes) for row in report.rows if _timed(row) and row.memory_impl_bytes]
              for report in reports]
    if not any(points):
        raise FigureError("no timed row with a memory count: nothing to place under the roof")
    groups = _unique(_group(row) for rows in points for row, _ in rows)
    colors = _colors(groups)
    intensities = [i for rows in points for _, i in rows] + [roof.ridge_flop_per_byte for roof in found]
    x_low, x_high = min(intensities) / 3, max(intensities) * 3
    figure = Figure(figsize=(WIDTH_IN, 3.3 + 0.17 * len(reports)), layout="constrained")
    ax = figure.add_subplot()
    ax.set_xscale("log")
    ax.set_yscale("log")
    for index, (report, rows) in enumerate(zip(reports, points)):
        for row, intensity in rows:
            ax.plot(intensity, row.flops / row.stats.median_s / 1e9, linestyle="none",
                    marker=MARKERS[index % len(MARKERS)], color=colors[_group(row)], markeredgecolor="black",
                    markeredgewidth=0.3, zorder=3, alpha=0.9)
    roofs = {(roof.peak_flops_per_s, roof.bandwidth_bytes_per_s): roof for roof in found}  # each drawn once
    styles = dict(zip(roofs, ("-", "--", ":", "-.") * len(roofs)))
    lowest = min([row.flops / row.stats.median_s for rows in points for row, _ in rows]
                 + [roof.roof(x_low) for roof in found])
    ax.set_xlim(x_low, x_high)
    ax.set_ylim(lowest / 1e9 / 2, max(roof.peak_flops_per_s for roof in found) / 1e9 * 2.5)
    _plain_log_axes(ax)
    for ident, roof in roofs.items():
        xs = [x_low, roof.ridge_flop_per_byte, x_high]
        ax.plot(xs, [roof.roof(x) / 1e9 for x in xs], color="0.15", linestyle=styles[ident], linewidth=1.1, zorder=1)
        ax.axvline(roof.ridge_flop_per_byte, color="0.5", linestyle=":", linewidth=0.6, zorder=0)
    ax.set_xlabel("arithmetic intensity [FLOP/byte]\n(bytes: what PyTorch's eager kernels read and write)")
    ax.set_ylabel("GFLOPS (FLOPs = multiply-adds)")
    operators_legend = ax.legend([Line2D([], [], linestyle="none", marker="o", color=colors[g], markeredgecolor="black",
                                         markeredgewidth=0.3) for g in groups], groups, loc="lower right",
                                 ncols=1 if len(groups) <= 6 else 2, handletextpad=0.2, borderaxespad=0.2,
                                 labelspacing=0.3)
    ax.add_artist(operators_legend)
    handles = [Line2D([], [], color="0.15", linestyle=styles[(roof.peak_flops_per_s, roof.bandwidth_bytes_per_s)],
                      marker=MARKERS[index % len(MARKERS)], markerfacecolor="white", markeredgecolor="black")
               for index, roof in enumerate(found)]
    # the roofs' numbers go in the legend: on the plot they would lie on the rows' points
    labels = [f"{describe(report)}\n{roof.peak_flops_per_s / 1e9:.3g} GFLOPS ({plain_text(roof.peak_kernel)}), "
              f"{roof.bandwidth_bytes_per_s / 1e9:.3g} GB/s ({plain_text(roof.bandwidth_kernel)}), ridge "
              f"{roof.ridge_flop_per_byte:.2g} FLOP/B" for report, roof in zip(reports, found)]
    figure.legend(handles, labels, loc="outside lower center", ncols=1, title="roof and points of",
                  handlelength=2.5)
    ax.set_title("Roofline: measured ceilings and each row's point", loc="left")
    return figure


def _group(row: Row) -> str:
    return _label(row) if row.workload.kind == "operator" else family(_label(row))


def models_figure(reports: Sequence[Report]):
    """Latency (or, on a GPU, throughput) against FLOPs per image, log-log, one line per model
    family; whiskers the 95 % interval of the median; a marker per report; FasterNet drawn bold."""
    from matplotlib.figure import Figure
    from matplotlib.lines import Line2D

    data = [(report, [row for row in report.rows if row.workload.kind == "model" and _timed(row)])
            for report in reports]
    data = [(report, rows) for report, rows in data if rows]
    if not data:
        raise FigureError("no timed model rows: the models figure is of 'flopsbench model' reports")
    metrics = _unique("throughput" if report.execution.device == "cuda" else "latency" for report, _ in data)
    families = _unique(family(_label(row)) for _, rows in data for row in rows)
    colors = _colors(families)
    figure = Figure(figsize=(WIDTH_IN, 1.2 + 2.4 * len(metrics) + 0.15 * (len(families) // 3 + len(data))),
                    layout="constrained")
    axes = figure.subplots(len(metrics), 1, squeeze=False)[:, 0]
    for ax, metric in zip(axes, metrics):
        for index, (report, rows) in enumerate(data):
            if ("throughput" if report.execution.device == "cuda" else "latency") != metric:
                continue
            for name in _unique(family(_label(row)) for row in rows):
                points = []
                for row in rows:
                    if family(_label(row)) != name:
                        continue
                    gflops = per_image(row.flops, report.execution.batch) / 1e9
                    if metric == "latency":
                        median, low, high = (value * 1e3 for value in _interval(row))
                        points.append((gflops, median, median - low, high - median))
                    else:
                        rate = _rate_with_whiskers(report.execution.batch, row)
                        points.append((gflops, *rate))
                points.sort()
                bold = name == "fasternet"
                ax.errorbar([p[0] for p in points], [p[1] for p in points],
                            yerr=[[p[2] for p in points], [p[3] for p in points]], color=colors[name],
                            marker=MARKERS[index % len(MARKERS)], linewidth=1.6 if bold else 0.9,
                            markersize=4.5 if bold else 3.5, elinewidth=0.6, zorder=3 if bold else 2)
        ax.set_xscale("log")
        ax.set_yscale("log")
        _plain_log_axes(ax)
        ax.set_ylabel(METRIC_LABEL[metric])
    axes[-1].set_xlabel("FLOPs per image [G] (multiply-adds, as timed)")
    axes[0].set_title("Models: " + " and ".join(metrics) + " against FLOPs", loc="left")
    family_handles = [Line2D([], [], color=colors[name], linewidth=1.6 if name == "fasternet" else 0.9)
                      for name in families]
    figure.legend(family_handles, families, loc="outside lower center", ncols=3, title="model family",
                  handlelength=1.5, columnspacing=1)
    report_handles = [Line2D([], [], color="0.2", linestyle="none", marker=MARKERS[index % len(MARKERS)])
                      for index in range(len(data))]
    axes[0].legend(report_handles, [describe(report) for report, _ in data], loc="upper left", handletextpad=0.3,
                   borderaxespad=0.2)
    return figure


def histogram_figure(report: Report, number: int):
    """Row ``number`` (1-based)'s samples in ms, stacked by timing round, with its median and the
    median's 95 % interval."""
    import numpy as np
    from matplotlib.figure import Figure

    if not 1 <= number <= len(report.rows):
        raise FigureError(f"--row {number}: the report has rows 1 to {len(report.rows)}")
    row = report.rows[number - 1]
    if not row.samples_s:
        raise FigureError(f"--row {number} ({_label(row)} {row.workload.shape}) has no samples "
                          f"({plain_text(row.status)})")
    samples = np.asarray(row.samples_s) * 1e3
    sizes = row.round_sizes if sum(row.round_sizes) == len(samples) and row.round_sizes else [len(samples)]
    rounds = np.split(samples, np.cumsum(sizes)[:-1])
    edges = np.histogram_bin_edges(samples, bins="auto")
    if len(edges) > 61:
        edges = np.linspace(samples.min(), samples.max(), 61)
    figure = Figure(figsize=(WIDTH_IN, 2.6), layout="constrained")
    ax = figure.add_subplot()
    shown = [(index, values) for index, values in enumerate(rounds, 1) if len(values)]
    colors = _colors([str(index) for index, _ in shown])
    ax.hist([values for _, values in shown], bins=edges, stacked=True, color=[colors[str(i)] for i, _ in shown],
            label=[f"round {index}: {len(values)} samples" for index, values in shown], zorder=2)
    median, low, high = (value * 1e3 for value in _interval(row))
    ax.axvspan(low, high, color="0.6", alpha=0.35, linewidth=0, zorder=1, label="95 % CI of the median")
    ax.axvline(median, color="black", linewidth=0.9, zorder=3, label=f"median {median:.4g} ms")
    ax.set_xlabel("latency per call [ms]")
    ax.set_ylabel("samples")
    ax.set_title(f"Row {number}: {_label(row)} {row.workload.shape}, {len(samples)} samples\n{describe(report)}",
                 loc="left")
    ax.legend(loc="upper right", handlelength=1, labelspacing=0.3)
    ax.grid(axis="x", visible=False)
    return figure
