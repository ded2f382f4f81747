"""onnxruntime sessions set up the way a careful user would, for timing.

Needs only onnxruntime and numpy (no torch): the board runner uses it too. Intra-op threads =
the thread option, inter-op threads 1, sequential execution, the intra-op worker threads pinned
to the chosen cores (``session.intra_op_thread_affinities``; the calling thread is pinned by the
caller), graph optimisation level and spinning as options. Every setting is returned as a dict
for the report."""

from __future__ import annotations

from pathlib import Path

import numpy as np

OPT_LEVELS = ("disable", "basic", "extended", "all")


def session_options(threads: int, cores: tuple[int, ...], opt_level: str = "all", spinning: bool = True):
    import onnxruntime as ort

    levels = {"disable": ort.GraphOptimizationLevel.ORT_DISABLE_ALL,
              "basic": ort.GraphOptimizationLevel.ORT_ENABLE_BASIC,
              "extended": ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED,
              "all": ort.GraphOptimizationLevel.ORT_ENABLE_ALL}
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.graph_optimization_level = levels[opt_level]
    options.add_session_config_entry("session.intra_op.allow_spinning", "1" if spinning else "0")
    # onnxruntime does not pin the calling thread; its threads-1 workers get one core each,
    # as 1-based logical processor ids.
    affinities = ";".join(str(core + 1) for core in cores[1:threads])
    if affinities:
        options.add_session_config_entry("session.intra_op_thread_affinities", affinities)
    record = {"provider": "CPUExecutionProvider", "intra_op_num_threads": threads, "inter_op_num_threads": 1,
              "execution_mode": "sequential", "graph_optimization_level": opt_level,
              "allow_spinning": spinning, "intra_op_thread_affinities": affinities or None,
              "onnxruntime": ort.__version__}
    return options, record


def make_session(path: Path, threads: int, cores: tuple[int, ...], opt_level: str = "all",
                 spinning: bool = True, optimized_model_path: Path | None = None):
    """(InferenceSession on the CPU execution provider, settings record)."""
    import onnxruntime as ort

    options, record = session_options(threads, cores, opt_level, spinning)
    if optimized_model_path is not None:
        options.optimized_model_filepath = str(optimized_model_path)
    session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    return session, record


def check_outputs(got: np.ndarray, expected: np.ndarray, rtol: float, atol: float) -> float:
    """The largest absolute difference; raises if beyond rtol/atol (numpy.allclose's rule)."""
    if got.shape != expected.shape:
        raise RuntimeError(f"onnxruntime output shape {got.shape} differs from PyTorch's {expected.shape}")
    worst = float(np.max(np.abs(got - expected))) if got.size else 0.0
    if not np.allclose(got, expected, rtol=rtol, atol=atol):
        raise RuntimeError(f"onnxruntime output differs from PyTorch's by up to {worst:.3g} "
                           f"(tolerance rtol={rtol}, atol={atol})")
    return worst
