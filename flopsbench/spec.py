"""Frozen specs: *what* is measured (a workload) and *how* (device, runtime, dtype, threads,
budget). Plain Python: importable without torch (the onnxruntime board runner uses it)."""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass, field, replace
from typing import Any

DTYPES = ("fp32", "fp16", "bf16")
RUNTIMES = ("torch", "onnxruntime")
MAX_SIDE = 1_000_000  # per side of a --shape: far beyond any real feature map; memory is checked separately
FLOP_CONVENTION = "fvcore: 1 multiply-add = 1 FLOP (FasterNet paper, footnote 1)"


@dataclass(frozen=True)
class Shape:
    """A feature map, channels × height × width (NCHW without the batch)."""

    c: int
    h: int
    w: int

    @classmethod
    def parse(cls, text: str) -> "Shape":
        """'96x56x56' -> Shape(96, 56, 56), each side 1 to MAX_SIDE; raises ValueError with the reason."""
        match = re.fullmatch(r"\s*(\d+)\s*[x×]\s*(\d+)\s*[x×]\s*(\d+)\s*", text.lower(), re.ASCII)
        if not match:
            raise ValueError(f"{text[:40]!r} is not CxHxW, e.g. 96x56x56")
        if any(len(side) > len(str(MAX_SIDE)) or int(side) > MAX_SIDE for side in match.groups()):
            raise ValueError(f"{text[:40]!r}: C, H and W must each be at most {MAX_SIDE:,}")
        c, h, w = (int(side) for side in match.groups())
        if min(c, h, w) < 1:
            raise ValueError(f"{text!r}: C, H and W must all be positive")
        return cls(c, h, w)

    def __str__(self) -> str:
        return f"{self.c}x{self.h}x{self.w}"


# The paper's Table 1 feature maps.
TABLE1_SHAPES = (Shape(96, 56, 56), Shape(192, 28, 28), Shape(384, 14, 14), Shape(768, 7, 7))


@dataclass(frozen=True)
class Workload:
    """What runs. An ``operator`` is a registered layer stacked ``layers`` times on a ``shape``
    input; a ``model`` is a registered network on a 3×R×R ``shape`` input (``layers`` unused),
    optionally with official ``weights`` loaded and BatchNorm folded into convs (``fuse_bn``)."""

    name: str
    shape: Shape
    layers: int
    params: tuple[tuple[str, Any], ...] = ()
    kind: str = "operator"
    weights: str | None = None
    fuse_bn: bool = False

    @property
    def param_dict(self) -> dict[str, Any]:
        return dict(self.params)

    def to_dict(self) -> dict:
        return {"kind": self.kind, "name": self.name, "shape": [self.shape.c, self.shape.h, self.shape.w],
                "layers": self.layers, "params": self.param_dict, "weights": self.weights,
                "fuse_bn": self.fuse_bn}

    @classmethod
    def from_dict(cls, data: dict) -> "Workload":
        return cls(data["name"], Shape(*data["shape"]), data["layers"], tuple(data["params"].items()),
                   data.get("kind", "operator"), data.get("weights"), data.get("fuse_bn", False))


@dataclass(frozen=True)
class TimingBudget:
    """Warm-up, then samples until both ``min_time_s`` and ``min_runs`` are met, at most
    ``max_runs``; ``exact_runs`` replaces all three with a fixed count.

    The sampling is split into ``rounds`` that visit every case in turn, so that a slow phase
    of a shared machine is spread over all cases instead of landing on one. Each round takes
    its share of the time, of the warm-up and of the run counts: each round is a fresh process,
    as cold as the first, so each warms up alike (at least ``warmup_runs`` calls). A row whose
    median is already known precisely enough after half its rounds or more (``stop_ci``, see
    rounds.precise_enough) takes no more."""

    warmup_s: float = 0.2
    warmup_runs: int = 3
    min_time_s: float = 2.0
    min_runs: int = 10
    max_runs: int = 10_000
    exact_runs: int | None = None
    rounds: int = 4
    stop_ci: float = 0.01  # after half the rounds (2+), a row stops once its median is known to ± this (0: never)

    def round_share(self, index: int) -> "TimingBudget":
        """The budget of round ``index`` (0-based) of ``rounds``. The shares of ``exact_runs`` and
        ``max_runs`` sum to them (the first rounds take the remainder); ``min_runs`` is rounded up,
        but never above the round's ``max_runs``. A round whose share of either is 0 takes no
        samples: its ``exact_runs`` is 0, which the rounds loop skips (with ``exact_runs`` set, only
        its share counts)."""
        n = self.rounds

        def split(runs: int) -> int:
            return runs // n + (index < runs % n)

        max_runs = split(self.max_runs)
        if self.exact_runs is not None:
            exact = split(self.exact_runs)
        else:
            exact = 0 if max_runs == 0 else None
        return replace(self, warmup_s=self.warmup_s / n,
                       min_time_s=self.min_time_s / n, min_runs=min(-(-self.min_runs // n), max_runs),
                       max_runs=max_runs, exact_runs=exact, rounds=1)


@dataclass(frozen=True)
class Execution:
    """How it runs. ``cores`` is the set of CPUs the process is pinned to while timing."""

    device: str = "cpu"
    runtime: str = "torch"  # what executes: torch, or onnxruntime's CPU execution provider
    runtime_options: tuple[tuple[str, Any], ...] = ()  # onnxruntime session settings, CUDA knobs
    dtype: str = "fp32"
    batch: int = 1
    threads: int = 1
    cores: tuple[int, ...] = (0,)
    budget: TimingBudget = field(default_factory=TimingBudget)
    seed: int = 0
    breakdown_depth: int = 0  # > 0: also measure each module at this depth of a model's tree
    breakdown_time_s: float = 0.3  # seconds of samples per part of the breakdown
    allocator: str = "retain"  # how the timing process's malloc treats freed memory (flopsbench.allocator)

    def option(self, key: str, default: Any = None) -> Any:
        """A runtime option (onnxruntime session settings, CUDA knobs), or ``default``."""
        return dict(self.runtime_options).get(key, default)

    def to_dict(self) -> dict:
        data = asdict(self)
        data["cores"] = list(self.cores)
        data["runtime_options"] = dict(self.runtime_options)
        return data

    @classmethod
    def from_dict(cls, data: dict) -> "Execution":
        data = dict(data)
        data["cores"] = tuple(data["cores"])
        data["runtime_options"] = tuple(data.get("runtime_options", {}).items())
        data["budget"] = TimingBudget(**data["budget"])
        return cls(**data)
