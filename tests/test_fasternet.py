"""FasterNet models against the paper's published counts, the official key names and timm."""

from __future__ import annotations

import re
import warnings

import pytest
import torch
from torch import nn

from flopsbench.paper import published
from flopsbench_zoo._registry import InvalidParameter
from flopsbench.counting import count_params_without_bn
from flopsbench_zoo.fasternet import VARIANTS, build_fasternet
from flopsbench_zoo.fusion import fuse_bn
from flopsbench_zoo.weights import load_official_weights
from flopsbench_zoo.models import ModelDef, get_model, list_models, register_model

with warnings.catch_warnings():
    warnings.simplefilter("ignore", FutureWarning)
    from fvcore.nn import FlopCountAnalysis

VARIANT_KEYS = list(VARIANTS)  # t0 t1 t2 s m l
SMALL = 64  # side of the inputs used for forward passes (stage 4 is then 2×2)


def fvcore_flops(model: nn.Module, side: int = 224) -> tuple[int, dict[str, int]]:
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")
        analysis = FlopCountAnalysis(model, torch.rand(1, 3, side, side))
        analysis.unsupported_ops_warnings(False)
        analysis.uncalled_modules_warnings(False)
        return int(analysis.total()), dict(analysis.by_operator())


def randomize_bn(model: nn.Module, seed: int = 0) -> nn.Module:
    """Non-trivial BN statistics and affine parameters, so that fusing them is really tested."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.BatchNorm2d):
                n = m.num_features
                m.running_mean.copy_(0.1 * torch.randn(n, generator=g))
                m.running_var.copy_(0.5 + 1.5 * torch.rand(n, generator=g))
                m.weight.copy_(0.5 + torch.rand(n, generator=g))
                m.bias.copy_(0.1 * torch.randn(n, generator=g))
    return model


def small_input(batch: int = 2, seed: int = 0) -> torch.Tensor:
    return torch.randn(batch, 3, SMALL, SMALL, generator=torch.Generator().manual_seed(seed))


# ----------------------------------------------------------------------------- registry

def test_registry_has_every_variant_in_paper_order():
    names = [n for n in list_models() if n.startswith("fasternet_")]
    assert names == [f"fasternet_{k}" for k in ("t0", "t1", "t2", "s", "m", "l")]
    model = get_model("fasternet_t0")
    assert model.paper_label == "FasterNet-T0" and model.input_resolution == 224
    assert model.defaults["act"] == "gelu" and get_model("fasternet_t2").defaults["act"] == "relu"
    labels = {m["name"] for m in published()["models"]}
    assert all(get_model(n).paper_label in labels for n in names)


def test_duplicate_and_unknown_names_raise():
    with pytest.raises(ValueError, match="already registered"):
        register_model(get_model("fasternet_t0"))
    with pytest.raises(KeyError, match="unknown model 'fasternet_xl'"):
        get_model("fasternet_xl")


def test_bad_options_raise_invalid_parameter():
    with pytest.raises(InvalidParameter) as info:
        build_fasternet("t0", act="swish")
    assert info.value.param == "act"
    with pytest.raises(InvalidParameter) as info:
        build_fasternet("t0", ratio=1 / 3)  # 40 channels × 1/3 is not whole
    assert info.value.param == "ratio"
    with pytest.raises(InvalidParameter) as info:
        build_fasternet("t0", forward_mode="inplace")
    assert info.value.param == "forward_mode"
    with pytest.raises(InvalidParameter) as info:
        get_model("fasternet_t0").create(width=2)
    assert info.value.param == "width"


@pytest.mark.parametrize("name", [n for n in list_models() if n.startswith("fasternet_")])
def test_every_fasternet_model_builds_and_runs(name):
    """(The baselines have the same test in test_baselines.py, at inputs each one accepts.)"""
    spec: ModelDef = get_model(name)
    options = {k: v for k, v in {"num_classes": 10, "seed": 0}.items() if k in spec.defaults}
    model = spec.create(**options).eval()
    with torch.no_grad():
        out = model(small_input(batch=1))
    assert out.shape == (1, options.get("num_classes", 1000)) and torch.isfinite(out).all()


def test_options_change_the_architecture():
    model = build_fasternet("t0", ratio=0.5, act="relu", num_classes=0)
    assert model.stages[0].blocks[0].spatial_mixing.partial_conv3.in_channels == 20  # 40 × 1/2
    assert isinstance(model.stages[0].blocks[0].mlp[2], nn.ReLU) and isinstance(model.head, nn.Identity)
    assert isinstance(build_fasternet("t0").stages[0].blocks[0].mlp[2], nn.GELU)


def test_init_is_deterministic_given_a_seed():
    a = build_fasternet("t0", seed=3).state_dict()
    b = build_fasternet("t0", seed=3).state_dict()
    c = build_fasternet("t0", seed=4).state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert not torch.equal(a["head.weight"], c["head.weight"])


# ----------------------------------------------------------------------------- paper counts

@pytest.mark.parametrize("key", VARIANT_KEYS)
def test_flops_and_params_match_published(key):
    """fvcore at 224×224, eval mode, 1 multiply-add = 1 FLOP.

    Unfused: conv + linear MACs + BN (2 per output element, affine, eval) + adaptive avg-pool
    (1 per input element) = Table 3. BN-fused: BN gone, the new conv biases cost nothing in
    fvcore, the avg-pool (≤ 75 k FLOPs) remains = Table 8 / README. Params: without BN."""
    cfg = published()["configs"]["variants"][key.upper()]
    model = build_fasternet(key, seed=0).eval()

    total, by_op = fvcore_flops(model)
    assert set(by_op) == {"conv", "batch_norm", "adaptive_avg_pool2d", "linear"}
    assert round(total / 1e9, 2) == cfg["paper_tab3_flops_G"]
    assert total / 1e9 == pytest.approx(cfg["derived_fvcore_eval_MACs_G_incl_BN2x_and_avgpool"], abs=1e-4)
    assert by_op["conv"] + by_op["linear"] == pytest.approx(cfg["derived_conv_linear_MACs_G"] * 1e9, abs=1e5)

    params = count_params_without_bn(model)
    assert round(params / 1e6, 1) == cfg["paper_tab8_params_M"] == cfg["readme_params_M"]

    fused = fuse_bn(model, small_input(batch=1), inplace=True)
    fused_total, fused_by_op = fvcore_flops(fused)
    assert set(fused_by_op) == {"conv", "adaptive_avg_pool2d", "linear"}
    assert fused_by_op["conv"] == by_op["conv"]  # a conv bias adds no FLOPs in fvcore
    assert fused_total == total - by_op["batch_norm"]
    assert round(fused_total / 1e9, 2) == cfg["paper_tab8_flops_G"] == cfg["readme_flops_G"]


# ----------------------------------------------------------------------------- numerics

@pytest.mark.parametrize("key", ["t0", "t2"])  # GELU and ReLU
def test_slicing_equals_split_cat(key):
    split = randomize_bn(build_fasternet(key, seed=0)).eval()
    slicing = build_fasternet(key, forward_mode="slicing").eval()
    slicing.load_state_dict(split.state_dict())
    x = small_input()
    with torch.no_grad():
        torch.testing.assert_close(slicing(x), split(x), atol=1e-6, rtol=1e-6)


@pytest.mark.parametrize("key", ["t0", "t2"])
def test_fused_equals_unfused(key):
    """Tolerance: atol = rtol = 1e-4 (fp32; folding reorders the arithmetic)."""
    model = randomize_bn(build_fasternet(key, seed=0)).eval()
    fused = fuse_bn(model, small_input())
    assert not any(isinstance(m, nn.BatchNorm2d) for m in fused.modules())
    assert sum(isinstance(m, nn.BatchNorm2d) for m in model.modules()) == 1 + 3 + sum(VARIANTS[key].depths)
    assert fused.patch_embed.proj.bias is not None and fused.stages[1].reduction.bias is not None
    assert fused.stages[0].blocks[0].mlp[0].bias is not None and fused.stages[0].blocks[0].mlp[3].bias is None
    x = small_input()
    with torch.no_grad():
        ref = model(x)
        torch.testing.assert_close(fused(x), ref, atol=1e-4, rtol=1e-4)
    assert ref.abs().max() > 1e-3  # the comparison is not between two near-zero outputs


def test_fuse_needs_eval_mode():
    with pytest.raises(ValueError, match="eval"):
        fuse_bn(build_fasternet("t0"), small_input())


# ----------------------------------------------------------------------------- official weights

OFFICIAL_T0_KEYS = [
    "patch_embed.proj.weight", "patch_embed.norm.weight", "patch_embed.norm.running_var",
    "stages.0.blocks.0.spatial_mixing.partial_conv3.weight",
    "stages.0.blocks.0.mlp.0.weight", "stages.0.blocks.0.mlp.1.running_mean",
    "stages.0.blocks.0.mlp.1.num_batches_tracked", "stages.0.blocks.0.mlp.3.weight",
    "stages.1.reduction.weight", "stages.1.norm.bias", "stages.6.blocks.1.mlp.3.weight",
    "avgpool_pre_head.1.weight", "head.weight", "head.bias",
]


def test_official_key_names_and_shapes():
    sd = build_fasternet("t0").state_dict()
    assert all(k in sd for k in OFFICIAL_T0_KEYS)
    assert sd["patch_embed.proj.weight"].shape == (40, 3, 4, 4)
    assert sd["stages.0.blocks.0.spatial_mixing.partial_conv3.weight"].shape == (10, 10, 3, 3)
    assert sd["stages.1.reduction.weight"].shape == (80, 40, 2, 2)
    assert sd["avgpool_pre_head.1.weight"].shape == (1280, 320, 1, 1)
    assert sd["head.weight"].shape == (1000, 1280)
    # 7 entries in stages (4 BasicStage + 3 PatchMerging), no drop-path or extra-norm state
    assert {int(k.split(".")[1]) for k in sd if k.startswith("stages.")} == set(range(7))
    assert all(re.match(r"(patch_embed|stages|avgpool_pre_head|head)\.", k) for k in sd)


def test_load_official_state_dict_roundtrip(tmp_path):
    source = randomize_bn(build_fasternet("t0", seed=0)).eval()
    path = tmp_path / "fasternet_t0-epoch.281-val_acc1.71.9180.pth"
    torch.save(source.state_dict(), path)
    target = load_official_weights(build_fasternet("t0", seed=1), path).eval()
    x = small_input()
    with torch.no_grad():
        torch.testing.assert_close(target(x), source(x), atol=0, rtol=0)


def test_load_lightning_checkpoint(tmp_path):
    source = build_fasternet("t0", seed=0)
    ckpt = {"epoch": 281, "global_step": 7,
            "state_dict": {f"model.{k}": v for k, v in source.state_dict().items()}}
    path = tmp_path / "last.ckpt"
    torch.save(ckpt, path)
    target = load_official_weights(build_fasternet("t0", seed=1), path)
    assert torch.equal(target.head.weight, source.head.weight)


def test_load_mismatched_checkpoint_names_the_keys(tmp_path):
    path = tmp_path / "t1.pth"
    torch.save(build_fasternet("t1").state_dict(), path)  # T1 weights into a T0
    with pytest.raises(ValueError, match=r"shape mismatch.*patch_embed\.proj\.weight \(64, 3, 4, 4\) "
                                         r"in file vs \(40, 3, 4, 4\) in model"):
        load_official_weights(build_fasternet("t0"), path)

    sd = build_fasternet("t0").state_dict()
    del sd["head.bias"]
    sd["stages.7.reduction.weight"] = torch.zeros(1)
    torch.save(sd, path)
    with pytest.raises(ValueError) as info:
        load_official_weights(build_fasternet("t0"), path)
    assert "1 missing key(s): head.bias" in str(info.value)
    assert "1 unexpected key(s): stages.7.reduction.weight" in str(info.value)

    torch.save(build_fasternet("t0").state_dict(), path)  # a matching file into a fused model
    with pytest.raises(ValueError, match="load weights before fuse_bn"):
        load_official_weights(fuse_bn(build_fasternet("t0").eval(), small_input()), path)


def test_load_missing_or_corrupt_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="no checkpoint file"):
        load_official_weights(build_fasternet("t0"), tmp_path / "absent.pth")
    corrupt = tmp_path / "corrupt.pth"
    corrupt.write_bytes(b"not a checkpoint at all")
    with pytest.raises(ValueError, match="not a PyTorch checkpoint"):
        load_official_weights(build_fasternet("t0"), corrupt)
    tensor = tmp_path / "tensor.pth"
    torch.save(torch.zeros(3), tensor)
    with pytest.raises(ValueError, match="not a state dict"):
        load_official_weights(build_fasternet("t0"), tensor)


# ----------------------------------------------------------------------------- timm

def timm_to_official(key: str) -> str:
    """timm renames the official keys: stages.i.downsample -> stages.(2i-1), stages.i.blocks ->
    stages.(2i).blocks, conv_head -> avgpool_pre_head.1, classifier -> head."""
    key = re.sub(r"^stages\.(\d+)\.downsample\.", lambda m: f"stages.{2 * int(m[1]) - 1}.", key)
    key = re.sub(r"^stages\.(\d+)\.blocks\.", lambda m: f"stages.{2 * int(m[1])}.blocks.", key)
    return key.replace("conv_head.", "avgpool_pre_head.1.").replace("classifier.", "head.")


@pytest.mark.baselines
def test_same_as_timm_fasternet_t0():
    import timm

    reference = randomize_bn(timm.create_model("fasternet_t0", pretrained=False)).eval()
    ours = build_fasternet("t0").eval()
    mapped = {timm_to_official(k): v for k, v in reference.state_dict().items()}
    assert set(mapped) == set(ours.state_dict())
    assert sum(p.numel() for p in reference.parameters()) == sum(p.numel() for p in ours.parameters())
    ours.load_state_dict(mapped, strict=True)
    x = small_input()
    with torch.no_grad():
        torch.testing.assert_close(ours(x), reference(x), atol=1e-6, rtol=1e-5)
