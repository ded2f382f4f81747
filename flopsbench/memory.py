"""Memory access of executed kernels, counted per aten op with a TorchDispatchMode.

Convention: each non-view aten op reads every distinct tensor it is given and writes every
tensor it returns, at numel × element size bytes. Views (split, slice, view, ...) move no data
and are free; allocations (empty) write nothing. A destination that an op only overwrites
(``copy_``'s self, out arguments) is written, not read. This is the traffic the kernels must
at least move, the "implementation" counterpart of the paper's ideal formulas (Eqs. 2, 3, 5),
and works on any module, whole models included.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field

import torch
from torch.utils._pytree import tree_flatten

from flopsbench_zoo.dispatch_mode import PlainDispatchMode

FREE_OPS = {"aten::empty", "aten::empty_strided", "aten::empty_like"}
OVERWRITE_ONLY_OPS = {"aten::copy_", "aten::fill_", "aten::zero_"}


@dataclass
class OpTraffic:
    calls: int = 0
    read_bytes: int = 0
    write_bytes: int = 0


@dataclass
class MemoryAccess:
    read_bytes: int = 0
    write_bytes: int = 0
    by_op: dict[str, OpTraffic] = field(default_factory=lambda: defaultdict(OpTraffic))

    @property
    def total_bytes(self) -> int:
        return self.read_bytes + self.write_bytes

    def to_dict(self) -> dict:
        return {
            "read_bytes": self.read_bytes, "write_bytes": self.write_bytes,
            "by_op": {name: vars(t) for name, t in sorted(self.by_op.items())},
        }


def _nbytes(t: torch.Tensor) -> int:
    return t.numel() * t.element_size()


def _overwritten_args(func) -> set[str]:
    """Names of arguments that the op writes without reading them first."""
    if func._schema.name in OVERWRITE_ONLY_OPS:
        return {a.name for a in func._schema.arguments if a.alias_info is not None and a.alias_info.is_write}
    return {a.name for a in func._schema.arguments if a.is_out}


class MemoryAccessCounter(PlainDispatchMode):
    def __init__(self) -> None:
        super().__init__()
        self.access = MemoryAccess()

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        out = func(*args, **kwargs)
        name = func._schema.name
        if func.is_view or name in FREE_OPS:
            return out
        skip = _overwritten_args(func)
        schema_args = func._schema.arguments
        read_tensors: dict[int, torch.Tensor] = {}
        for i, arg in enumerate(args):
            if i < len(schema_args) and schema_args[i].name in skip:
                continue
            for t in tree_flatten(arg)[0]:
                if isinstance(t, torch.Tensor):
                    read_tensors[id(t)] = t
        for key, arg in kwargs.items():
            if key not in skip:
                for t in tree_flatten(arg)[0]:
                    if isinstance(t, torch.Tensor):
                        read_tensors[id(t)] = t
        written = {id(t): t for t in tree_flatten(out)[0] if isinstance(t, torch.Tensor)}
        traffic = self.access.by_op[name]
        traffic.calls += 1
        reads = sum(_nbytes(t) for t in read_tensors.values())
        writes = sum(_nbytes(t) for t in written.values())
        traffic.read_bytes += reads
        traffic.write_bytes += writes
        self.access.read_bytes += reads
        self.access.write_bytes += writes
        return out


def count_memory_access(module: torch.nn.Module, *inputs: torch.Tensor) -> MemoryAccess:
    """Run one inference forward pass and return the bytes its aten ops read and write."""
    with torch.inference_mode(), MemoryAccessCounter() as counter:
        module(*inputs)
    counter.access.by_op = dict(counter.access.by_op)
    return counter.access
