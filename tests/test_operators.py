"""Operators against ground truth: analytic FLOP formulas, the paper's Table 1 counts, the
paper's memory formulas worked out by hand, PConv's forward modes, and the registry."""

from __future__ import annotations

import json
from decimal import Decimal

import pytest
import torch
from torch import nn

import flopsbench_zoo
from flopsbench.counting import count_flops, count_params
from flopsbench.paper import published
from flopsbench.spec import TABLE1_SHAPES, Shape
from flopsbench_zoo.pconv import PartialConv, partial_channels

ALL_OPS = flopsbench_zoo.list_operators()
TABLE1_ROWS = published()["operators_table"]


def defaults(name: str) -> dict:
    return dict(flopsbench_zoo.get_operator(name).defaults)


def build(name: str, c: int, layers: int, **overrides) -> nn.Module:
    op = flopsbench_zoo.get_operator(name)
    return op.build_stack(c, layers, **op.resolve(overrides)).eval()


# --- registry ------------------------------------------------------------------------------------

def test_registry_holds_the_five_operators_in_table1_order():
    assert ALL_OPS == ["conv", "gconv", "dwconv", "pwconv", "pconv"]


def test_duplicate_registration_raises_and_keeps_the_original():
    original = flopsbench_zoo.get_operator("conv")
    clone = flopsbench_zoo.OperatorDef(name="conv", description="impostor", defaults={},
                                       build=lambda c: nn.Identity(), macs=lambda c, h, w: 0,
                                       memory_elements=lambda c, h, w, batch: 0)
    with pytest.raises(ValueError, match="already registered"):
        flopsbench_zoo.register_operator(clone)
    assert flopsbench_zoo.get_operator("conv") is original
    assert flopsbench_zoo.list_operators() == ALL_OPS


def test_unknown_operator_raises_keyerror_naming_the_known_ones():
    with pytest.raises(KeyError, match="pconv"):
        flopsbench_zoo.get_operator("foo")


def test_resolve_takes_only_parameters_the_operator_has():
    assert flopsbench_zoo.get_operator("pwconv").resolve({"kernel_size": 5, "groups": 2}) == {}
    assert flopsbench_zoo.get_operator("gconv").resolve({"groups": 4, "ratio": 0.5}) == {"kernel_size": 3, "groups": 4}


# --- FLOPs: fvcore vs the analytic formula, whole registry ----------------------------------------

@pytest.mark.parametrize("name", ALL_OPS)
@pytest.mark.parametrize("batch", [1, 2])
def test_fvcore_flops_equal_analytic_macs_times_layers(name, batch):
    c, h, w, layers = 16, 8, 8, 2
    module = build(name, c, layers)
    counted = count_flops(module, torch.randn(batch, c, h, w))
    expected = batch * layers * flopsbench_zoo.get_operator(name).macs(c, h, w, **defaults(name))
    assert counted.total == expected
    assert counted.unsupported_ops == {}


# Hand-worked multiply-adds of one layer at c=16, h=w=8, k=3: h·w·k²·c·(c/g), PConv h·w·k²·c_p².
HAND_MACS_16x8x8 = {
    "conv": 64 * 9 * 16 * 16,    # 147,456
    "gconv": 64 * 9 * 16 * 1,    # 16 groups -> 1 input channel per group
    "dwconv": 64 * 9 * 16,
    "pwconv": 64 * 1 * 16 * 16,
    "pconv": 64 * 9 * 4 * 4,     # c_p = 16/4 = 4
}


@pytest.mark.parametrize("name", ALL_OPS)
def test_analytic_macs_match_hand_values(name):
    assert flopsbench_zoo.get_operator(name).macs(16, 8, 8, **defaults(name)) == HAND_MACS_16x8x8[name]


def test_fvcore_counts_non_default_parameters():
    # conv k=5 at 8x4x4, 1 layer: 16·25·8·8 = 25,600; gconv g=2 at 8x4x4: 16·9·8·4 = 4,608
    assert count_flops(build("conv", 8, 1, kernel_size=5), torch.randn(1, 8, 4, 4)).total == 25_600
    assert count_flops(build("gconv", 8, 1, groups=2), torch.randn(1, 8, 4, 4)).total == 4_608
    # pconv r=1/2 at 8x4x4: c_p = 4 -> 16·9·4·4 = 2,304
    assert count_flops(build("pconv", 8, 1, ratio=0.5), torch.randn(1, 8, 4, 4)).total == 2_304


@pytest.mark.parametrize("name", ALL_OPS)
def test_params_match_weight_count(name):
    op = flopsbench_zoo.get_operator(name)
    # one layer's weights = its macs per output pixel (k²·c·c/g), no bias
    assert count_params(build(name, 16, 3)) == 3 * op.macs(16, 1, 1, **defaults(name))


@pytest.mark.parametrize("name", ALL_OPS)
@pytest.mark.parametrize("kernel_size", [3, 5])
def test_same_padding_keeps_the_shape(name, kernel_size):
    module = build(name, 16, 2, kernel_size=kernel_size)
    with torch.no_grad():
        assert module(torch.randn(1, 16, 8, 6)).shape == (1, 16, 8, 6)


# --- the paper's Table 1 --------------------------------------------------------------------------

def _op_for_label(label: str) -> str:
    names = [n for n in ALL_OPS if flopsbench_zoo.get_operator(n).paper_label == label]
    assert len(names) == 1, f"no single registered operator for Table 1 row {label!r}"
    return names[0]


def _decimals(printed) -> int:
    return max(0, -Decimal(json.dumps(printed)).as_tuple().exponent)


def _truncated(flops: int, decimals: int) -> Decimal:
    """FLOPs in M, truncated (floored) to ``decimals`` places, exactly, in integer arithmetic."""
    scale = 10**decimals
    return Decimal(flops * scale // 10**6) / scale


def test_table1_covers_every_paper_labelled_operator_at_every_shape():
    labelled = {flopsbench_zoo.get_operator(n).paper_label for n in ALL_OPS} - {None}
    seen = {(r["operator"], (r["feature_map"]["c"], r["feature_map"]["h"], r["feature_map"]["w"]))
            for r in TABLE1_ROWS}
    assert {label for label, _ in seen} == labelled
    assert seen == {(label, (s.c, s.h, s.w)) for label in labelled for s in TABLE1_SHAPES}


@pytest.mark.parametrize("entry", TABLE1_ROWS,
                         ids=[f"{r['operator'].split()[0]}-{r['feature_map']['c']}" for r in TABLE1_ROWS])
def test_fvcore_matches_table1_printed_flops(entry):
    """The paper truncates: e.g. GConv 162.57 M is printed 162, DWConv 27.095 M as 27.09."""
    name = _op_for_label(entry["operator"])
    fm = entry["feature_map"]
    assert entry["layers_stacked"] == 10
    module = build(name, fm["c"], 10)
    flops = count_flops(module, torch.randn(1, fm["c"], fm["h"], fm["w"])).total
    assert flops == 10 * flopsbench_zoo.get_operator(name).macs(fm["c"], fm["h"], fm["w"], **defaults(name))
    printed = Decimal(json.dumps(entry["flops_M_total_10_layers"]))
    assert _truncated(flops, _decimals(entry["flops_M_total_10_layers"])) == printed


def test_table1_printed_flops_are_truncated_not_rounded():
    """Pins down which convention the check above relies on: rounding to nearest would miss
    several printed values, truncation matches all of them."""
    rounded_misses = 0
    for entry in TABLE1_ROWS:
        name = _op_for_label(entry["operator"])
        fm = entry["feature_map"]
        flops = 10 * flopsbench_zoo.get_operator(name).macs(fm["c"], fm["h"], fm["w"], **defaults(name))
        d = _decimals(entry["flops_M_total_10_layers"])
        printed = Decimal(json.dumps(entry["flops_M_total_10_layers"]))
        rounded = (Decimal(flops) / 10**6).quantize(Decimal(1).scaleb(-d), rounding="ROUND_HALF_UP")
        rounded_misses += rounded != printed
        assert _truncated(flops, d) == printed
    assert rounded_misses >= 4  # gconv/pconv 162.57 -> 163, dwconv 27.095 -> 27.10, 13.5475 -> 13.55, ...


def test_conv_ten_layers_at_96x56x56_is_exactly_2601123840():
    module = build("conv", 96, 10)
    assert count_flops(module, torch.randn(1, 96, 56, 56)).total == 2_601_123_840


# --- memory formulas (paper Eqs. 2, 3, 5), by hand ------------------------------------------------

@pytest.mark.parametrize("name, c, h, w, batch, params, expected", [
    ("conv", 4, 2, 2, 1, {"kernel_size": 3}, 2 * 2 * 2 * 4 + 9 * 16),              # 176
    ("conv", 4, 2, 2, 3, {"kernel_size": 3}, 3 * 2 * 2 * 2 * 4 + 9 * 16),          # 240
    ("conv", 4, 2, 3, 1, {"kernel_size": 5}, 2 * 3 * 2 * 4 + 25 * 16),             # 448
    ("gconv", 4, 2, 2, 1, {"kernel_size": 3, "groups": 2}, 32 + 9 * 4 * 2),        # 104
    ("gconv", 16, 2, 2, 1, {"kernel_size": 3, "groups": 16}, 2 * 2 * 2 * 16 + 9 * 16),
    ("dwconv", 4, 2, 2, 1, {"kernel_size": 3}, 32 + 9 * 4),                        # 68
    ("pwconv", 4, 2, 2, 1, {}, 32 + 16),                                           # 48
    ("pconv", 8, 2, 2, 1, {"kernel_size": 3, "ratio": 0.25, "forward_mode": "split_cat"},
     2 * 2 * 2 * 2 + 9 * 2 * 2),                                                   # c_p = 2: 52
    ("pconv", 8, 2, 2, 2, {"kernel_size": 3, "ratio": 0.5, "forward_mode": "slicing"},
     2 * 2 * 2 * 2 * 4 + 9 * 4 * 4),                                               # c_p = 4: 208
])
def test_memory_formula_by_hand(name, c, h, w, batch, params, expected):
    assert flopsbench_zoo.get_operator(name).memory_elements(c, h, w, batch, **params) == expected


def test_pconv_memory_ignores_untouched_channels():
    """Eq. 5 at r = 1/4 is the conv formula at c_p = c/4: the other 3c/4 channels cost nothing."""
    pconv = flopsbench_zoo.get_operator("pconv").memory_elements(96, 56, 56, 1, **defaults("pconv"))
    conv = flopsbench_zoo.get_operator("conv").memory_elements(24, 56, 56, 1, kernel_size=3)
    assert pconv == conv == 56 * 56 * 2 * 24 + 9 * 24 * 24


# --- PConv ----------------------------------------------------------------------------------------

def test_pconv_forward_modes_give_identical_outputs():
    torch.manual_seed(0)
    split = PartialConv(16, 0.25, 3, "split_cat").eval()
    slicing = PartialConv(16, 0.25, 3, "slicing").eval()
    slicing.load_state_dict(split.state_dict())
    x = torch.randn(2, 16, 8, 8)
    x_before = x.clone()
    with torch.no_grad():
        a, b = split(x), slicing(x)
    assert torch.equal(a, b)
    assert torch.equal(x, x_before), "slicing must not modify the caller's tensor"
    assert torch.equal(a[:, 4:], x[:, 4:]), "the untouched c - c_p channels pass through"
    assert not torch.equal(a[:, :4], x[:, :4])


def test_pconv_state_dict_matches_the_official_checkpoints():
    assert list(PartialConv(16).state_dict()) == ["partial_conv3.weight"]
    assert PartialConv(16).partial_conv3.weight.shape == (4, 4, 3, 3)


def test_pconv_slicing_raises_in_training_mode():
    module = PartialConv(16, 0.25, 3, "slicing").train()
    with pytest.raises(RuntimeError, match="inference only"):
        module(torch.randn(1, 16, 4, 4))


def test_pconv_split_cat_trains():
    module = PartialConv(8, 0.5).train()
    module(torch.randn(1, 8, 4, 4)).sum().backward()
    assert module.partial_conv3.weight.grad is not None


@pytest.mark.parametrize("c, ratio", [(10, 0.25), (16, 0.3), (16, 0.0), (16, 1.5), (3, 0.25)])
def test_pconv_non_integral_channels_raise_invalid_parameter(c, ratio):
    with pytest.raises(flopsbench_zoo.InvalidParameter) as info:
        PartialConv(c, ratio)
    assert info.value.param == "ratio"
    with pytest.raises(flopsbench_zoo.InvalidParameter) as info:
        flopsbench_zoo.get_operator("pconv").build_stack(c, 1, kernel_size=3, ratio=ratio, forward_mode="split_cat")
    assert info.value.param == "ratio"


@pytest.mark.parametrize("c, ratio, expected", [(16, 0.25, 4), (12, 1 / 3, 4), (8, 1.0, 8), (10, 0.5, 5)])
def test_partial_channels(c, ratio, expected):
    assert partial_channels(c, ratio) == expected


def test_pconv_unknown_forward_mode_raises():
    with pytest.raises(flopsbench_zoo.InvalidParameter) as info:
        flopsbench_zoo.get_operator("pconv").check(16, kernel_size=3, ratio=0.25, forward_mode="fast")
    assert info.value.param == "forward_mode"


# --- parameter checks -----------------------------------------------------------------------------

@pytest.mark.parametrize("name, c, params, param", [
    ("gconv", 20, {"kernel_size": 3, "groups": 16}, "groups"),
    ("gconv", 16, {"kernel_size": 3, "groups": 0}, "groups"),
    ("conv", 16, {"kernel_size": 2}, "kernel_size"),
    ("dwconv", 16, {"kernel_size": 0}, "kernel_size"),
    ("pconv", 16, {"kernel_size": 4, "ratio": 0.25, "forward_mode": "split_cat"}, "kernel_size"),
])
def test_check_raises_invalid_parameter_naming_it(name, c, params, param):
    with pytest.raises(flopsbench_zoo.InvalidParameter) as info:
        flopsbench_zoo.get_operator(name).build_stack(c, 1, **params)
    assert info.value.param == param


def test_shape_parse():
    assert Shape.parse("96x56x56") == Shape(96, 56, 56)
    assert Shape.parse("16X8×4") == Shape(16, 8, 4)
    for bad in ("96x56", "0x8x8", "axbxc", "1x2x3x4", "-1x8x8"):
        with pytest.raises(ValueError):
            Shape.parse(bad)
