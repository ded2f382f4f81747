"""Export workloads to ONNX, cached by a content key, with flopsbench's counts embedded.

PConv is exported in its ``split_cat`` form (same outputs; the in-place ``slicing`` form bloats
ONNX graphs). The cache key hashes what determines the file: the module's structure and every
weight, the input shape and dtype, and the torch and opset versions, so repeated runs reuse the
file and any change makes a new one; a checksum beside each file catches a damaged one, which is
exported again. The embedded metadata (``flopsbench`` in the model's metadata_props) carries the
workload and its FLOPs and memory counts to a board that has no torch to count them with."""

from __future__ import annotations

import hashlib
import json
import warnings
from pathlib import Path
from typing import NamedTuple

import onnx
import torch

from flopsbench import __version__, validation
from flopsbench.checksum import sha256
from flopsbench.constants import METADATA_KEY, cache_root
from flopsbench.output import staged, write_text
from flopsbench.ort_runtime import check_outputs
from flopsbench.report import Row
from flopsbench.spec import Execution
from flopsbench_zoo.pconv import PartialConv

OPSET = 17  # a model needing a later one says so as ``onnx_opset`` (CycleMLP's DeformConv: 19)
# onnxruntime's output must match PyTorch's within rtol, and atol × the output's largest magnitude.
ORT_RTOL, ORT_ATOL = 1e-3, 1e-4
# Counts embedded in an ONNX export, for a board without torch to report (Row field names).
EMBEDDED_COUNTS = ("params", "params_without_bn", "flops", "flops_analytic", "flops_unfused", "flops_fused",
                   "flops_by_operator", "unsupported_ops", "zero_flop_ops", "memory_ideal_elements",
                   "memory_ideal_bytes", "memory_impl")


def export_metadata(row: Row, execution: Execution) -> dict:
    """What an export carries for the board runner (``flopsbench.board``): the workload, batch,
    dtype, the counted row's FLOPs/params/memory (``EMBEDDED_COUNTS``), and the versions that
    made it. ``row`` must already be counted (``runner.count_case``)."""
    return {"workload": row.workload.to_dict(), "batch": execution.batch, "dtype": execution.dtype,
            "counts": {key: getattr(row, key) for key in EMBEDDED_COUNTS},
            "memory_impl_bytes": row.memory_impl_bytes,
            "exported_with": {"torch": torch.__version__, "flopsbench": __version__}}


def cache_dir() -> Path:
    return cache_root() / "onnx"


def check_cache() -> None:
    """Fail before measuring if the export cache cannot be written (a validation.OptionError naming
    FLOPSBENCH_CACHE, which sets it)."""
    validation.check_folder(cache_dir(), "FLOPSBENCH_CACHE",
                            "set FLOPSBENCH_CACHE to a writable folder, e.g. FLOPSBENCH_CACHE=/tmp/flopsbench")


def content_key(module: torch.nn.Module, x: torch.Tensor) -> str:
    digest = hashlib.blake2b(digest_size=16)
    digest.update(f"{torch.__version__}|opset{OPSET}|{tuple(x.shape)}|{x.dtype}|{module!r}".encode())
    for name, tensor in module.state_dict().items():
        digest.update(f"{name}{tuple(tensor.shape)}{tensor.dtype}".encode())
        digest.update(tensor.detach().cpu().contiguous().view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()


def export(module: torch.nn.Module, x: torch.Tensor, path: Path, metadata: dict | None = None) -> Path:
    """Write ``module`` (eval, PConv as split_cat) to ``path`` with ``metadata`` embedded, by
    flopsbench.output's rules: a regular file is replaced in one step, keeping its mode; a device
    or symlink is written through."""
    with staged(path) as tmp:
        write_onnx(module, x, tmp, metadata)
    return path


def write_onnx(module: torch.nn.Module, x: torch.Tensor, path: Path, metadata: dict | None = None) -> None:
    """``module`` (eval, PConv as split_cat) as ONNX in ``path``, with ``metadata`` embedded."""
    modes = {m: m.forward_mode for m in module.modules() if isinstance(m, PartialConv)}
    for m in modes:
        m.forward_mode = "split_cat"
    try:
        with warnings.catch_warnings(), torch.no_grad():
            warnings.simplefilter("ignore")  # the TorchScript exporter announces its deprecation
            torch.onnx.export(module, (x,), str(path), input_names=["input"], output_names=["output"],
                              opset_version=max(OPSET, getattr(module, "onnx_opset", OPSET)), dynamo=False)
    finally:
        for m, mode in modes.items():
            m.forward_mode = mode
    if metadata is not None:
        model = onnx.load(str(path))
        entry = model.metadata_props.add()
        entry.key, entry.value = METADATA_KEY, json.dumps(metadata)
        onnx.save(model, str(path))


class CachedExport(NamedTuple):
    path: Path
    cached: bool  # the file was reused
    problem: str | None = None  # why a cached file was not reused but exported again


def cached_export(module: torch.nn.Module, x: torch.Tensor, metadata: dict | None = None) -> CachedExport:
    """The ONNX file for this module and input, exported only if not cached. Each file has a
    checksum record beside it (``KEY.json``: size and sha256, written after the file); a cached
    file is reused only if it matches its record, else (damaged, truncated, or no record, e.g.
    an export cut short) it is exported again and ``problem`` says why."""
    path = cache_dir() / f"{content_key(module, x)}.onnx"
    problem = _cache_problem(path) if path.exists() else None
    if path.exists() and problem is None:
        return CachedExport(path, True)
    export(module, x, path, metadata)
    write_text(path.with_suffix(".json"), json.dumps({"bytes": path.stat().st_size, "sha256": sha256(path)}))
    return CachedExport(path, False, problem)


def _cache_problem(path: Path) -> str | None:
    """Why the cached ``path`` cannot be trusted, or None if it matches its checksum record."""
    try:
        record = json.loads(path.with_suffix(".json").read_text())
        size, digest = record["bytes"], record["sha256"]
    except FileNotFoundError:
        return "the cached file had no checksum record"
    except (OSError, ValueError, TypeError, KeyError) as exc:
        return f"its checksum record was unreadable ({type(exc).__name__})"
    if not isinstance(size, int) or not isinstance(digest, str):
        return "its checksum record was unreadable (wrong types)"
    if path.stat().st_size != size:
        return f"the cached file had {path.stat().st_size} bytes instead of {size}"
    if sha256(path) != digest:
        return "the cached file's sha256 did not match its record"
    return None


def read_metadata(path: Path) -> dict | None:
    model = onnx.load(str(path), load_external_data=False)
    value = next((p.value for p in model.metadata_props if p.key == METADATA_KEY), None)
    return None if value is None else json.loads(value)


def compare_with_torch(session, feeds: dict, module: torch.nn.Module, x: torch.Tensor) -> float:
    """onnxruntime's output against PyTorch's on the same input: the largest absolute
    difference, or an error beyond rtol ORT_RTOL and atol ORT_ATOL × the output's magnitude."""
    with torch.inference_mode():
        expected = module(x).numpy()
    scale = float(abs(expected).max()) or 1.0  # relative to the output, however small it is
    return check_outputs(session.run(None, feeds)[0], expected, rtol=ORT_RTOL, atol=ORT_ATOL * scale)
