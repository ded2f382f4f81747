"""BN folding: pairs from the executed graph, a check that can see a wrong pairing, fp32 folds."""

from __future__ import annotations

import subprocess
import sys

import pytest
import torch
from torch import nn
from torch.nn.utils.fusion import fuse_conv_bn_eval

import flopsbench.runner
from flopsbench.build import build_case
from flopsbench.runner import fused_checked
from flopsbench.spec import Execution, Shape, Workload
from flopsbench_zoo.baselines import resolve_model
from flopsbench_zoo.fasternet import build_fasternet
from flopsbench_zoo.fusion import conv_bn_pairs, fuse_bn, randomize_bn


def image(channels: int = 8, side: int = 16, seed: int = 0) -> torch.Tensor:
    return torch.randn(2, channels, side, side, generator=torch.Generator().manual_seed(seed))


class BnFirst(nn.Module):
    """Registered conv then BN, as a fold by registration order expects; but BN runs first."""

    def __init__(self, c: int = 8):
        super().__init__()
        self.conv = nn.Conv2d(c, c, 3, padding=1, bias=False)
        self.bn = nn.BatchNorm2d(c)

    def forward(self, x):
        return self.conv(self.bn(x))


class RegisteredBackwards(nn.Module):
    """BN registered before its conv, run after it: foldable."""

    def __init__(self, c: int = 8):
        super().__init__()
        self.bn = nn.BatchNorm2d(c)
        self.conv = nn.Conv2d(c, c, 3, padding=1, bias=False)

    def forward(self, x):
        return self.bn(self.conv(x))


class ConvBn(nn.Module):
    def __init__(self, c: int = 8):
        super().__init__()
        self.conv = nn.Conv2d(c, c, 3, padding=1, bias=False)
        self.bn = nn.BatchNorm2d(c)


class OutputAlsoAdded(ConvBn):
    def forward(self, x):
        y = self.conv(x)
        return self.bn(y) + y


class OutputAlsoReturned(ConvBn):
    def forward(self, x):
        y = self.conv(x)
        return self.bn(y), y


class ChangedInPlaceBeforeBn(ConvBn):
    def forward(self, x):
        y = self.conv(x)
        y.relu_()
        return self.bn(y)


class ConvRunsTwice(ConvBn):
    def forward(self, x):
        return self.bn(self.conv(x)) + self.conv(x)


class BnRunsTwice(ConvBn):
    def forward(self, x):
        return self.bn(self.conv(x)) + self.bn(x)


class ConvRegisteredTwice(ConvBn):
    def __init__(self, c: int = 8):
        super().__init__(c)
        self.alias = self.conv  # folding under one name would leave the other unfolded

    def forward(self, x):
        return self.bn(self.alias(x))


def test_bn_run_before_its_conv_is_not_folded_into_it():
    """A fresh BN is nearly the identity: folding it into the conv that follows it changed the
    outputs too little for the old check to see, so it was folded and accepted."""
    module = BnFirst().eval()
    fused, _ = fused_checked(module, image())
    assert type(fused.bn) is nn.BatchNorm2d and fused.conv.bias is None
    randomize_bn(module), randomize_bn(fused)
    with torch.no_grad():
        torch.testing.assert_close(fused(image()), module(image()))


def test_pairs_follow_execution_not_registration():
    module = randomize_bn(RegisteredBackwards()).eval()
    assert conv_bn_pairs(module, image()) == [("conv", "bn")]
    fused, _ = fused_checked(module, image())
    assert isinstance(fused.bn, nn.Identity) and fused.conv.bias is not None
    with torch.no_grad():
        torch.testing.assert_close(fused(image()), module(image()), atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("model", [BnFirst, OutputAlsoAdded, OutputAlsoReturned, ChangedInPlaceBeforeBn,
                                   ConvRunsTwice, BnRunsTwice, ConvRegisteredTwice])
def test_a_conv_output_read_by_anything_but_its_bn_is_not_folded(model):
    assert conv_bn_pairs(model().eval(), image()) == []


def test_a_wrong_pairing_is_refused(monkeypatch):
    """The check runs on a copy with random BN statistics, where a wrong fold shows."""
    monkeypatch.setattr(flopsbench.runner, "conv_bn_pairs", lambda module, x: [("conv", "bn")])
    with pytest.raises(RuntimeError, match="random BN statistics"):
        fused_checked(BnFirst().eval(), image())


def test_fused_checked_folds_the_module_itself_not_its_random_copy():
    model = randomize_bn(build_fasternet("t0", seed=0), seed=1).eval()
    x = image(3, 32)
    fused, _ = fused_checked(model, x)
    assert not any(isinstance(m, nn.BatchNorm2d) for m in fused.modules())
    with torch.no_grad():
        torch.testing.assert_close(fused(x), model(x), atol=1e-4, rtol=1e-4)


def test_fasternet_pairs_are_the_official_ones():
    """patch_embed.proj+norm, each PatchMerging's reduction+norm, each MLP's first conv + BN."""
    model = build_fasternet("t0", seed=0).eval()
    expected = [("patch_embed.proj", "patch_embed.norm")]
    for i, stage in enumerate(model.stages):
        if hasattr(stage, "reduction"):
            expected.append((f"stages.{i}.reduction", f"stages.{i}.norm"))
        else:
            expected += [(f"stages.{i}.blocks.{j}.mlp.0", f"stages.{i}.blocks.{j}.mlp.1")
                         for j in range(len(stage.blocks))]
    assert conv_bn_pairs(model, image(3, 64)) == expected


@pytest.mark.baselines
def test_timm_model_folds_every_bn():
    """Hooks and ATen see timm models as they run (no FX tracing needed)."""
    model = resolve_model("timm:resnet18").create(num_classes=10).eval()
    x = image(3, 32)
    fused, _ = fused_checked(model, x)
    bns = [m for m in model.modules() if isinstance(m, nn.BatchNorm2d)]
    assert len(conv_bn_pairs(model, x)) == len(bns) == 20
    assert not any(isinstance(m, nn.BatchNorm2d) for m in fused.modules())


def test_build_case_folds_in_fp32_then_casts(tmp_path):
    """A bf16 run gets the fp32 fold rounded once, not a fold computed in bf16 (which rounds the
    BN statistics, their product and the scaled weights in turn)."""
    model = randomize_bn(resolve_model("fasternet_t0").create(num_classes=10)).eval()
    torch.save(model.state_dict(), tmp_path / "weights.pth")
    workload = Workload("fasternet_t0", Shape(3, 64, 64), 1, (("num_classes", 10),), kind="model",
                        weights=str(tmp_path / "weights.pth"), fuse_bn=True)
    _, pairs = fused_checked(*build_case(workload, Execution()))
    built, x = build_case(workload, Execution(dtype="bf16"), bn_pairs=pairs)
    assert x.dtype == torch.bfloat16
    for conv, bn in [("patch_embed.proj", "patch_embed.norm"), ("stages.1.reduction", "stages.1.norm"),
                     ("stages.0.blocks.0.mlp.0", "stages.0.blocks.0.mlp.1")]:
        expected = fuse_conv_bn_eval(model.get_submodule(conv), model.get_submodule(bn)).to(torch.bfloat16)
        assert torch.equal(built.get_submodule(conv).weight, expected.weight)
        assert torch.equal(built.get_submodule(conv).bias, expected.bias)


def test_fold_of_a_half_precision_model_is_computed_in_fp32():
    module = randomize_bn(RegisteredBackwards()).eval().to(torch.bfloat16)
    fused = fuse_bn(module, image().to(torch.bfloat16))
    expected = fuse_conv_bn_eval(module.conv.float(), module.bn.float()).to(torch.bfloat16)
    assert fused.conv.weight.dtype == torch.bfloat16
    assert torch.equal(fused.conv.weight, expected.weight) and torch.equal(fused.conv.bias, expected.bias)


def test_a_worker_folds_the_parents_pairs_without_tracing(monkeypatch):
    """Count here, time there: the pairs are found (a forward pass under a dispatch mode) in the
    parent and travel in the job; the worker folds them and traces nothing."""
    import flopsbench_zoo.fusion
    from flopsbench.backends.torch_cpu import TorchCPU

    workload = Workload("fasternet_t0", Shape(3, 64, 64), 1, (("num_classes", 10),), kind="model", fuse_bn=True)
    _, pairs = fused_checked(*build_case(workload, Execution()))

    def no_tracing(*args, **kwargs):
        raise AssertionError("a worker traced the model")

    monkeypatch.setattr(flopsbench_zoo.fusion, "conv_bn_pairs", no_tracing)
    monkeypatch.setattr(flopsbench_zoo.fusion, "_Trace", no_tracing)
    case = {"workload": workload.to_dict(), "bn_pairs": [list(pair) for pair in pairs] + [["x", 1], "junk"]}
    prepared = TorchCPU().prepare(case, Execution())
    for conv, bn in pairs:
        assert isinstance(prepared.module.get_submodule(bn), torch.nn.Identity)
        assert prepared.module.get_submodule(conv).bias is not None


def test_counting_a_model_does_not_import_dynamo():
    """torch guards every dispatch mode with torch._disable_dynamo unless it opts out, and the
    guard's first call imports torch._dynamo and sympy (1.7-2 s of a model's count). A fresh
    interpreter: this one may have imported them for another test."""
    code = """
import sys, torch
from torch import nn
from flopsbench.memory import count_memory_access
from flopsbench_zoo.fusion import conv_bn_pairs
model = nn.Sequential(nn.Conv2d(4, 4, 3), nn.BatchNorm2d(4)).eval()
x = torch.randn(1, 4, 8, 8)
assert conv_bn_pairs(model, x) == [("0", "1")]
count_memory_access(model, x)
print(sorted(name for name in ("torch._dynamo", "sympy") if name in sys.modules))
"""
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"
