"""FLOP counting: the ops fvcore counts as 0 FLOPs by design (its ignore list) are listed with
their call counts, never silently zero, and the notes under a rendered table name them."""

from __future__ import annotations

import pytest
import torch
from torch import nn

import flopsbench_zoo
from flopsbench.counting import count_flops
from flopsbench.exporters import render
from flopsbench.report import Row
from flopsbench.spec import Execution, Shape, Workload
from flopsbench_zoo.fasternet import VARIANTS, build_fasternet
from tests.conftest import conv_table1_row, make_report


class ReluCat(nn.Module):
    """Two ``relu`` calls, one ``relu_`` and one ``cat`` around two 1×1 convs."""

    def __init__(self, c: int = 4):
        super().__init__()
        self.conv = nn.Conv2d(c, c, 1, bias=False)
        self.act = nn.ReLU(inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = torch.relu(self.conv(x))
        z = self.act(self.conv(y))
        return torch.cat((y, z, torch.relu(z)), dim=1)


def test_relu_and_cat_are_listed_with_their_call_counts():
    counted = count_flops(ReluCat(4).eval(), torch.randn(1, 4, 5, 5))
    assert counted.zero_flop_ops == {"aten::relu": 2, "aten::relu_": 1, "aten::cat": 1}
    # Listing them changes no count: 2 convs of 25 pixels × 4·4 multiply-adds, nothing unsupported.
    assert counted.total == 2 * 25 * 16 and counted.by_operator == {"conv": 800}
    assert counted.unsupported_ops == {}


def test_pconv_stack_lists_one_split_and_one_cat_per_layer():
    op = flopsbench_zoo.get_operator("pconv")
    layers = 3
    module = op.build_stack(16, layers, **op.resolve({})).eval()
    counted = count_flops(module, torch.randn(2, 16, 8, 8))
    assert counted.zero_flop_ops == {"aten::split_with_sizes": layers, "aten::cat": layers}


@pytest.mark.parametrize("variant", ["t0", "t2"])
def test_fasternet_lists_each_blocks_split_cat_and_relus(variant):
    blocks = sum(VARIANTS[variant].depths)  # one PConv (split + cat) per block
    counted = count_flops(build_fasternet(variant).eval(), torch.rand(1, 3, 64, 64))
    expected = {"aten::split_with_sizes": blocks, "aten::cat": blocks, "aten::flatten": 1}
    if VARIANTS[variant].act == "relu":  # in-place ReLU in every block's MLP and in the head
        expected["aten::relu_"] = blocks + 1
    assert counted.zero_flop_ops == expected


def test_zero_flop_ops_survive_counting_beyond_batch_2():
    from flopsbench.backends.torch_cpu import TorchCPU
    from flopsbench.runner import count_and_stage

    workload = Workload("pconv", Shape(16, 8, 8), 2, (("kernel_size", 3), ("ratio", 0.25),
                                                      ("forward_mode", "split_cat")))
    row = Row(workload)
    count_and_stage(row, Execution(batch=5), TorchCPU())
    assert row.zero_flop_ops == {"aten::split_with_sizes": 2, "aten::cat": 2}


def test_markdown_notes_list_the_zero_flop_ops_with_call_counts():
    row = conv_table1_row()
    row.zero_flop_ops = count_flops(ReluCat(4).eval(), torch.randn(1, 4, 5, 5)).zero_flop_ops
    notes = [line for line in render(make_report([row]), "md").splitlines() if "0 FLOPs by design" in line]
    assert len(notes) == 1
    assert "aten::cat ×1, aten::relu ×2, aten::relu_ ×1" in notes[0]
