"""PVT v1 and CycleMLP (flopsbench_zoo/pvt.py, flopsbench_zoo/cyclemlp.py): the official architectures and
key names, Table 3's params and FLOPs at its printed precision, the deform_conv2d FLOP handle,
and the onnxruntime path."""

from __future__ import annotations

import json
from pathlib import Path

import onnx
import pytest
import torch

from flopsbench.counting import count_flops, count_params
from flopsbench.onnx_export import compare_with_torch, export
from flopsbench.ort_runtime import make_session
from flopsbench_zoo import get_model
from flopsbench_zoo.weights import load_official_weights

ROOT = Path(__file__).resolve().parents[1]
TABLE3 = {row["name"]: row for row in
          json.loads((ROOT / "flopsbench/data/fasternet_published.json").read_text())["models"]}
NAMES = ["pvt_tiny", "pvt_small", "pvt_medium", "pvt_large", "cyclemlp_b1", "cyclemlp_b2"]
LABELS = ["PVT-Tiny", "PVT-Small", "PVT-Medium", "PVT-Large", "CycleMLP-B1", "CycleMLP-B2"]


def needing_torchvision(*names: str) -> list:
    """``names`` as parameters, CycleMLP's marked ``baselines`` (its Cycle FC is torchvision's); PVT is plain torch."""
    return [pytest.param(n, marks=pytest.mark.baselines) if n.startswith("cyclemlp") else n for n in names]


def printed(value: float, like: float) -> float:
    """``value`` rounded to as many decimals as the paper printed ``like`` with."""
    text = repr(float(like))
    return round(value, len(text.split(".")[1].rstrip("0")) if "." in text else 0)


def test_registered_under_the_reserved_names_with_table3_labels():
    for name, label in zip(NAMES, LABELS):
        entry = get_model(name)
        assert entry.paper_label == label and entry.input_resolution == 224
        assert dict(entry.defaults) == {"num_classes": 1000, "seed": None}


class Built(dict):
    """Each model built on first use (seeded), then shared."""

    def __missing__(self, name: str) -> torch.nn.Module:
        self[name] = get_model(name).create(seed=0).eval()
        return self[name]


@pytest.fixture(scope="module")
def built():
    """Each model once, shared by the params, FLOPs, key-name and ONNX tests."""
    return Built()


@pytest.mark.parametrize("name", needing_torchvision(*NAMES))
def test_params_and_flops_match_table3_at_printed_precision(built, name):
    model, row = built[name], TABLE3[get_model(name).paper_label]
    assert printed(count_params(model) / 1e6, row["params_M"]) == row["params_M"]
    flops = count_flops(model, torch.zeros(1, 3, 224, 224))
    assert printed(flops.total / 1e9, row["flops_G"]) == row["flops_G"], flops.total
    assert not any("deform" in op for op in flops.unsupported_ops)


def test_pvt_flops_include_the_official_position_embedding_resize(built):
    """Stages 2-4 resize their position embeddings even at 224, as the official forward does;
    without those 752,640 FLOPs PVT-Medium is 6.6849 G, which does not print as the paper's 6.69."""
    by_op = count_flops(built["pvt_medium"], torch.zeros(1, 3, 224, 224)).by_operator
    assert by_op["upsample_bilinear2d"] == 4 * (28 * 28 * 128 + 14 * 14 * 320 + 7 * 7 * 512)


@pytest.mark.baselines
def test_deform_conv2d_flops_are_the_convs_multiply_adds():
    """N·C_out·(C_in/groups)·kh·kw·H_out·W_out, the CycleMLP authors' count (fvcore's conv formula;
    the bilinear sampling, mask and bias are not counted)."""
    from torchvision.ops import deform_conv2d

    class Deform(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.weight = torch.nn.Parameter(torch.randn(4, 3, 3, 2))  # C_out 4, C_in 6 in 2 groups
            self.offset = torch.nn.Parameter(torch.randn(2, 2 * 3 * 3 * 2, 5, 10))  # 3 offset groups

        def forward(self, x):
            return deform_conv2d(x, self.offset, self.weight, stride=(2, 1), padding=(1, 1))

    x = torch.randn(2, 6, 9, 9)
    flops = count_flops(Deform(), x)
    assert flops.by_operator == {"deform_conv2d": 2 * 4 * 3 * 3 * 2 * 5 * 10}  # N·C_out·C_in/g·kh·kw·Ho·Wo
    assert flops.unsupported_ops == {}


@pytest.mark.baselines
def test_cycle_fc_block_flops_by_hand():
    """One CycleMLP token mixer at dim 8 on 4×4: three channel FCs (two of them Cycle FC) and
    the projection, 4 · 16 · 8 · 8 multiply-adds, plus the reweighting MLP on the pooled vector."""
    from flopsbench_zoo.cyclemlp import CycleMLP

    flops = count_flops(CycleMLP(8).eval(), torch.randn(1, 4, 4, 8))
    assert flops.by_operator["deform_conv2d"] == 2 * 16 * 8 * 8
    assert flops.by_operator["linear"] == 2 * 16 * 8 * 8 + (8 * 2 + 2 * 24)


@pytest.mark.baselines
def test_cycle_fc_is_a_channel_fc_on_channels_shifted_by_their_index():
    """Channel i is read at a shift of (i + 1) mod 3 - 1 along W for (1, 3), along H for (3, 1),
    zero beyond the border, as the official offsets make deform_conv2d do."""
    from flopsbench_zoo.cyclemlp import CycleFC

    x = torch.randn(2, 7, 5, 6)
    for kernel, dim in (((1, 3), 3), ((3, 1), 2)):
        fc = CycleFC(7, 4, kernel)
        padded = torch.nn.functional.pad(x, (1, 1, 1, 1))
        shifted = torch.stack([padded[:, i].roll(-((i + 1) % 3 - 1), dims=dim - 1)[:, 1:-1, 1:-1]
                               for i in range(7)], dim=1)
        expected = torch.nn.functional.conv2d(shifted, fc.weight, fc.bias)
        torch.testing.assert_close(fc(x), expected)


# Per family's smallest: official keys with their shapes, other official keys, keys it must not have.
OFFICIAL_KEYS = {
    "pvt_tiny": ({"pos_embed4": (1, 50, 512), "cls_token": (1, 1, 512), "block1.0.attn.sr.weight": (64, 64, 8, 8)},
                 {"patch_embed2.proj.weight", "block3.1.attn.kv.bias", "block2.0.mlp.fc1.weight", "norm.weight",
                  "head.bias"},
                 {"block4.0.attn.sr.weight"}),
    "cyclemlp_b1": ({"network.0.0.attn.sfc_h.offset": (1, 128, 1, 1), "network.1.proj.weight": (128, 64, 3, 3),
                     "patch_embed.proj.weight": (64, 3, 7, 7)},
                    {"network.6.1.attn.reweight.fc2.weight", "network.4.3.attn.mlp_c.weight", "norm.bias"},
                    {"network.4.3.attn.mlp_c.bias"}),
}


@pytest.mark.parametrize("name", needing_torchvision(*OFFICIAL_KEYS))
def test_official_key_names_and_checkpoint_round_trip(tmp_path, built, name):
    shapes, present, absent = OFFICIAL_KEYS[name]
    state = built[name].state_dict()
    assert {key: tuple(state[key].shape) for key in shapes} == shapes
    assert present <= set(state) and not absent & set(state)

    x = torch.randn(1, 3, 224, 224)
    path = tmp_path / f"{name}.pth"
    torch.save({"model": state}, path)  # released as {'model': state_dict}, DeiT-style
    other = load_official_weights(get_model(name).create(seed=1).eval(), path)
    with torch.no_grad():
        torch.testing.assert_close(other(x), built[name](x))


@pytest.mark.parametrize("name", needing_torchvision("pvt_tiny", "cyclemlp_b1"))
def test_other_input_sides_and_num_classes(name):
    model = get_model(name).create(num_classes=10, seed=0).eval()
    with torch.no_grad():
        assert model(torch.randn(2, 3, 160, 160)).shape == (2, 10)
    features = get_model(name).create(num_classes=0, seed=0).eval()
    with torch.no_grad():
        assert features(torch.randn(1, 3, 64, 64)).shape == (1, 512)


@pytest.mark.parametrize("name", needing_torchvision("pvt_tiny", "cyclemlp_b1"))
def test_smallest_of_each_family_runs_on_onnxruntime(name, tmp_path, built):
    """Exported as the onnxruntime backend exports it; Cycle FC becomes ONNX DeformConv (opset 19)."""
    model, x = built[name], torch.randn(1, 3, 224, 224)
    path = export(model, x, tmp_path / f"{name}.onnx")
    session, _ = make_session(path, threads=1, cores=(0,))
    assert compare_with_torch(session, {session.get_inputs()[0].name: x.numpy()}, model, x) < 1e-3
    graph = onnx.load(str(path))
    assert ("DeformConv" in {node.op_type for node in graph.graph.node}) == name.startswith("cyclemlp")
    assert graph.opset_import[0].version == (19 if name.startswith("cyclemlp") else 17)
