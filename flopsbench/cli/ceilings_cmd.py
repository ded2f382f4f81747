"""`flopsbench ceilings`: this machine's peak compute and memory bandwidth under a runtime, threads,
cores and dtype (``flopsbench.ceilings``), measured once and cached; reports then gain "% of peak"
and "Bound by"."""

from __future__ import annotations

import contextlib
import json
import math
import sys
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.console import Console
from rich.table import Table
from rich.text import Text

from flopsbench import allocator, ceilings, validation
from flopsbench.cli import ClickException, app
from flopsbench.cli.options import (Cores, Device, Dtype, MinTime, OrtOptLevel, OrtSpinning, Rounds, Runtime, Threads,
                                    Warmup, bad, check_choice, run_settings, validated)
from flopsbench.environment import capture_environment
from flopsbench.escaping import plain_text
from flopsbench.output import write_stdout, write_text

VIEWS = ("table", "json")


@app.command("ceilings")
def ceilings_command(
    device: Device = "cpu", runtime: Runtime = None, threads: Threads = 1, cores: Cores = None, dtype: Dtype = "fp32",
    ort_opt_level: OrtOptLevel = "all", ort_spinning: OrtSpinning = True,
    warmup: Warmup = 0.2,
    min_time: MinTime = 2.0,
    rounds: Rounds = 2,
    refresh: bool = typer.Option(False, "--refresh", help="Measure again even if this machine's ceilings are cached."),
    fmt: str = typer.Option("table", "--format", help="View: table or json (the record)."),
    output: Optional[str] = typer.Option(None, "-o", "--output", metavar="FILE",
                                         help="Also write the record (JSON) to FILE ('-' = stdout)."),
) -> None:
    """Measure peak compute (a large GEMM and convolution) and memory bandwidth (a large copy and a
    read-only sum) as the rows are timed: same runtime, threads, pinning and dtype. Cached per
    machine under $FLOPSBENCH_CACHE/ceilings; -o also writes the record to FILE."""
    check_choice(fmt, VIEWS, "--format")
    settings = run_settings(
        "ceilings", device=device, runtime=runtime, ort_opt_level=ort_opt_level, ort_spinning=ort_spinning,
        mode=None, batch=None, cuda_graph=False, l2_flush=False, channels_last=False, cudnn_benchmark=True,
        find_max_batch=False, tf32=False, threads=threads, cores=cores, dtype=dtype, warmup=warmup,
        min_time=min_time, min_runs=10, max_runs=10_000, runs=None, rounds=rounds, stop_ci=0.0, fmt="table",
        output=output, save=False, results_dir=Path("results"), paper=False, seed=0,
        allocator="retain" if allocator.available("retain") else "system")  # a peak: the steady state where it can
    execution = settings.execution
    validated(validation.check_folder, ceilings.cache_path(ceilings.key_for({}, execution)).parent,
              "FLOPSBENCH_CACHE", "set FLOPSBENCH_CACHE to a writable folder, e.g. FLOPSBENCH_CACHE=/tmp/flopsbench")
    environment = capture_environment(cores=execution.cores)
    if device == "cuda":
        import torch

        environment["gpu_name"] = torch.cuda.get_device_name(0)  # the name the rows' reports record
    key = ceilings.key_for(environment, execution)
    path = ceilings.cache_path(key)
    record = None if refresh else _cached(path, key)
    if record is None:
        typer.echo(f"timing gemm, conv, copy and read in {execution.budget.rounds} fresh process(es), "
                   f"~{4 * min_time:.0f} s …", err=True)
        try:
            record = ceilings.measure(execution, environment=environment)
        except RuntimeError as exc:
            raise ClickException(str(exc)) from None
        path = ceilings.save(record)
        typer.echo(f"cached in {path}", err=True)
    else:
        typer.echo(f"cached record of {plain_text(record.get('created_utc'))} ({path}); --refresh measures again",
                   err=True)
    text = json.dumps(record, indent=1) + "\n"
    if output is not None and output != "-":
        write_text(Path(output), text)
        typer.echo(f"wrote {output}", err=True)
    if fmt == "json" or output == "-":
        write_stdout(text)
    else:
        show(record, Console(file=sys.stdout, width=None if sys.stdout.isatty() else 160))


def _cached(path: Path, key: dict) -> dict | None:
    """The cached record at ``path`` if it is a sound one of ``key``; a damaged one is measured again."""
    try:
        data = json.loads(path.read_text())
        found = ceilings.Ceilings.from_record(data)
    except (OSError, ValueError, UnicodeDecodeError, RecursionError):
        return None
    return data if found.key == key else None


def show(record: dict, console: Console) -> None:
    """The kernels and the roof they make, as a table with a title and notes (the record may come
    from a file: every value is checked before use)."""
    found = ceilings.Ceilings.from_record(record)
    key = found.key
    where = key.get("gpu_name") if key.get("device") == "cuda" else key.get("cpu_model")
    title = (f"Ceilings of {key['device']}, {key['runtime']}: {where}, host {key['hostname']}, {key['threads']} "
             f"thread(s) pinned to cores {key['cores']}, {key['dtype']} (measured {found.created_utc})")
    table = Table(title=Text(plain_text(title)), title_justify="left", caption_justify="left", caption=Text(
        f"Peak compute {found.peak_flops_per_s / 1e9:.3g} GFLOPS ({plain_text(found.peak_kernel)}); bandwidth "
        f"{found.bandwidth_bytes_per_s / 1e9:.3g} GB/s ({plain_text(found.bandwidth_kernel)}); ridge point "
        f"{found.ridge_flop_per_byte:.3g} FLOP/byte: rows of lower intensity are bound by memory. Rates from each "
        "kernel's best sample (other load only slows a call).\n"
        f"FLOPs: {ceilings.CONVENTION}. Bytes: the least each kernel reads and writes; GB = 10^9 bytes."))
    for column in ("Kernel", "What", "FLOPs [G]", "Bytes [MB]", "Best [ms]", "Median [ms]", "95% CI [ms]", "GFLOPS",
                   "GB/s", "Runs", "Problem"):
        table.add_column(column, justify="left" if column in ("Kernel", "What", "Problem") else "right")
    for kernel in record.get("kernels") if isinstance(record.get("kernels"), list) else []:
        kernel = kernel if isinstance(kernel, dict) else {}
        stats = kernel.get("stats") if isinstance(kernel.get("stats"), dict) else {}
        low, high = _number(stats.get("ci_low_s")), _number(stats.get("ci_high_s"))
        flops, moved = _number(kernel.get("flops_per_s")), _number(kernel.get("bytes_per_s"))
        table.add_row(*(Text(plain_text(cell)) for cell in (
            kernel.get("name"), kernel.get("what"), _shown(kernel.get("flops"), 1e9), _shown(kernel.get("bytes"), 1e6),
            _shown(stats.get("min_s"), 1e-3), _shown(stats.get("median_s"), 1e-3),
            f"{_shown(low, 1e-3)}–{_shown(high, 1e-3)}" if low and high else "–",
            _shown(flops, 1e9), _shown(moved, 1e9), _shown(stats.get("n"), 1), kernel.get("problem") or "")))
    console.print(table)


def _number(value) -> float | None:
    """A finite number from a record, else None."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        return None
    return float(value)


def _shown(value, unit: float) -> str:
    number = _number(value)
    return "–" if number is None else f"{number / unit:.4g}"


def given_ceilings(paths: list[Path], reports: list) -> contextlib.AbstractContextManager:
    """The views within the block hold ``reports`` against the records in ``paths``; each record must
    match some report's device and runtime (a one-line error otherwise)."""
    found = [load_ceilings(path) for path in paths]
    runs = {(report.execution.device, report.execution.runtime) for report in reports}
    for record in found:
        if (record.key["device"], record.key["runtime"]) not in runs:
            raise bad("--ceilings", f"{record.source} holds ceilings of {record.key['device']} with "
                                    f"{record.key['runtime']}, and no report ran there "
                                    f"({', '.join(f'{d} with {r}' for d, r in sorted(runs))}); measure them with "
                                    "'flopsbench ceilings --device D --runtime R -o FILE'")
    return ceilings.given(*found)


def load_ceilings(path: Path) -> ceilings.Ceilings:
    """--ceilings FILE, or a one-line error naming what is wrong with it."""
    try:
        return ceilings.read(path)
    except OSError as exc:
        raise bad("--ceilings", f"cannot read {path} ({exc.strerror}); give a file written by "
                                "'flopsbench ceilings -o FILE'") from None
    except (ValueError, UnicodeDecodeError) as exc:
        raise bad("--ceilings", f"{path} is not a ceilings record ({exc}); give a file written by "
                                "'flopsbench ceilings -o FILE'") from None


CeilingsFiles = Annotated[Optional[list[Path]], typer.Option(
    "--ceilings", metavar="FILE", help="A record written by 'flopsbench ceilings -o FILE' (repeatable; default: the "
                                       "cached one of the report's machine, device, runtime, threads, cores, dtype).")]
