"""Measured memory access (the 'implementation' counterpart of Eqs. 2, 3, 5), checked by hand.

fp32 everywhere: 4 bytes per element."""

from __future__ import annotations

import pytest
import torch

import flopsbench_zoo
from flopsbench.memory import MemoryAccessCounter, count_memory_access
from flopsbench.spec import Shape, Workload
from flopsbench_zoo.conv import conv_layer
from flopsbench_zoo.pconv import PartialConv

F32 = 4


def _traffic(access, op_name):
    t = access.by_op.get(op_name)
    return None if t is None else (t.calls, t.read_bytes, t.write_bytes)


def _consistent(access):
    """Totals are the sums over ops."""
    assert access.read_bytes == sum(t.read_bytes for t in access.by_op.values())
    assert access.write_bytes == sum(t.write_bytes for t in access.by_op.values())
    assert access.total_bytes == access.read_bytes + access.write_bytes


def _no_view_traffic(access):
    for name, t in access.by_op.items():
        if any(v in name for v in ("split", "slice", "narrow", "view", "select")):
            assert t.read_bytes == 0 and t.write_bytes == 0, f"view op {name} moved data"


@pytest.mark.parametrize("c, h, w, k, batch", [(4, 2, 2, 3, 1), (16, 8, 8, 3, 1), (8, 5, 3, 1, 2)])
def test_single_conv_layer(c, h, w, k, batch):
    access = count_memory_access(conv_layer(c, k).eval(), torch.randn(batch, c, h, w))
    assert access.read_bytes == F32 * (batch * c * h * w + k * k * c * c)
    assert access.write_bytes == F32 * batch * c * h * w
    _consistent(access)


def test_conv_4x2x2_by_hand():
    # input 4·2·2 = 16, weights 9·4·4 = 144 -> read 640 B; output 16 -> written 64 B;
    # together 2·2·2·4 + 9·16 = 176 elements, the paper's Eq. 2.
    access = count_memory_access(conv_layer(4, 3).eval(), torch.randn(1, 4, 2, 2))
    assert (access.read_bytes, access.write_bytes) == (640, 64)
    assert access.total_bytes == 4 * flopsbench_zoo.get_operator("conv").memory_elements(4, 2, 2, 1, kernel_size=3)


@pytest.mark.parametrize("name", ["conv", "gconv", "dwconv", "pwconv"])
def test_convolutions_measure_exactly_the_paper_formula(name):
    """For plain convolutions, executed kernels move exactly what Eqs. 2/3 say, layer by layer."""
    op = flopsbench_zoo.get_operator(name)
    params = dict(op.defaults)
    module = op.build_stack(16, 3, **params).eval()
    access = count_memory_access(module, torch.randn(1, 16, 8, 8))
    assert access.total_bytes == F32 * 3 * op.memory_elements(16, 8, 8, 1, **params)
    _consistent(access)


def test_pconv_split_cat_traffic():
    """c=16, h=w=8, r=1/4 -> c_p=4. conv: reads 4·64 + 9·16 = 400 el, writes 256 el;
    cat: reads c·h·w = 1024 el (both parts), writes 1024 el; split is a view: free."""
    access = count_memory_access(PartialConv(16, 0.25, 3, "split_cat").eval(), torch.randn(1, 16, 8, 8))
    assert _traffic(access, "aten::cat") == (1, F32 * 1024, F32 * 1024)
    assert access.read_bytes == F32 * (400 + 1024)
    assert access.write_bytes == F32 * (256 + 1024)
    _no_view_traffic(access)
    _consistent(access)
    # Eq. 5 is only the conv part: h·w·2c_p + k²c_p² = 512 + 144 elements.
    eq5 = flopsbench_zoo.get_operator("pconv").memory_elements(16, 8, 8, 1, kernel_size=3, ratio=0.25)
    assert eq5 == 656
    assert access.total_bytes - F32 * eq5 == F32 * 2 * 1024  # the cat's extra copy


def test_pconv_slicing_traffic():
    """clone: reads and writes c·h·w = 1024 el; conv as above; copy_ into the slice reads its
    source (c_p·h·w = 256 el) and writes the destination (256 el) without reading it."""
    access = count_memory_access(PartialConv(16, 0.25, 3, "slicing").eval(), torch.randn(1, 16, 8, 8))
    assert _traffic(access, "aten::clone") == (1, F32 * 1024, F32 * 1024)
    assert _traffic(access, "aten::copy_") == (1, F32 * 256, F32 * 256)
    assert access.read_bytes == F32 * (1024 + 400 + 256)
    assert access.write_bytes == F32 * (1024 + 256 + 256)
    _no_view_traffic(access)
    _consistent(access)


def test_pconv_stack_scales_with_layers():
    one = count_memory_access(PartialConv(16).eval(), torch.randn(1, 16, 8, 8))
    stack = flopsbench_zoo.get_operator("pconv").build_stack(16, 3, kernel_size=3, ratio=0.25,
                                                              forward_mode="split_cat").eval()
    three = count_memory_access(stack, torch.randn(1, 16, 8, 8))
    assert (three.read_bytes, three.write_bytes) == (3 * one.read_bytes, 3 * one.write_bytes)
    assert three.by_op["aten::cat"].calls == 3


def _count(fn):
    with torch.inference_mode(), MemoryAccessCounter() as counter:
        fn()
    return counter.access


def test_out_argument_is_written_not_read():
    a, b, out = torch.randn(4, 4), torch.randn(4, 4), torch.empty(4, 4)
    access = _count(lambda: torch.add(a, b, out=out))
    assert (access.read_bytes, access.write_bytes) == (2 * 64, 64)


def test_same_tensor_twice_is_read_once():
    a = torch.randn(4, 4)
    access = _count(lambda: torch.add(a, a))
    assert (access.read_bytes, access.write_bytes) == (64, 64)


def test_fill_overwrites_without_reading_but_inplace_relu_reads():
    x = torch.randn(4, 4)
    fill = _count(lambda: x.fill_(1.0))
    assert (fill.read_bytes, fill.write_bytes) == (0, 64)
    relu = _count(lambda: x.relu_())
    assert (relu.read_bytes, relu.write_bytes) == (64, 64)


def test_views_and_allocations_are_free():
    x = torch.randn(4, 4)
    access = _count(lambda: (x.view(16), x[:2], x.t(), torch.empty(100)))
    assert access.total_bytes == 0
    assert all(t.read_bytes == 0 and t.write_bytes == 0 for t in access.by_op.values())


def test_multi_output_out_arguments_are_written_not_read():
    a = torch.randn(4, 4)
    values, indices = torch.empty(4), torch.empty(4, dtype=torch.long)
    access = _count(lambda: torch.max(a, 0, out=(values, indices)))
    assert access.read_bytes == 64  # only a; values (16 B) and indices (32 B) are only written
    assert access.write_bytes == 16 + 32


def test_to_dict_is_sorted_and_complete():
    access = count_memory_access(PartialConv(16).eval(), torch.randn(1, 16, 8, 8))
    data = access.to_dict()
    assert list(data["by_op"]) == sorted(data["by_op"])
    assert data["read_bytes"] == access.read_bytes and data["write_bytes"] == access.write_bytes
    assert data["by_op"]["aten::cat"] == {"calls": 1, "read_bytes": 4096, "write_bytes": 4096}


@pytest.mark.parametrize("workload", [
    Workload("pconv", Shape(16, 8, 8), 2, (("kernel_size", 3), ("ratio", 0.25), ("forward_mode", "split_cat"))),
    Workload("fasternet_t0", Shape(3, 64, 64), 1, (("num_classes", 10),), kind="model", fuse_bn=True),
], ids=["pconv", "fasternet_t0"])
def test_counts_beyond_batch_2_equal_a_direct_count(workload):
    """The parent counts batches 1 and 2 and extends the line to the run's batch: every count
    (FLOPs both ways, params, ideal and executed memory per op, the breakdown's parts) must be what
    counting the whole batch gives."""
    from dataclasses import replace

    from flopsbench.backends.torch_cpu import TorchCPU
    from flopsbench.report import Row
    from flopsbench.runner import BATCH_COUNTS, count_and_stage, count_at
    from flopsbench.spec import Execution

    execution = Execution(batch=5, breakdown_depth=2 if workload.kind == "model" else 0)
    direct, extended = Row(workload), Row(workload)
    count_at(direct, execution)
    count_and_stage(extended, execution, TorchCPU())
    for name in BATCH_COUNTS:
        assert getattr(extended, name) == getattr(direct, name), name
    assert direct.flops and direct.memory_impl["read_bytes"]  # something was counted
    one = Row(workload)
    count_at(one, replace(execution, batch=1))
    assert direct.memory_impl != one.memory_impl  # and it does depend on the batch
