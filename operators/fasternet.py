"""FasterNet (Chen et al., CVPR 2023): PConv + two 1×1 convs per block, four stages.

Module and attribute names follow the official release (github.com/JierunChen/FasterNet,
``models/fasternet.py`` with ``fork_feat=False``), so its checkpoints load strictly:

    patch_embed.proj / patch_embed.norm                      Conv k4 s4 (no bias) + BN
    stages.{0,2,4,6}.blocks.{j}                              BasicStage -> MLPBlock
        .spatial_mixing.partial_conv3                        PConv (operators.pconv.PartialConv)
        .mlp.0 / .mlp.1 / .mlp.2 / .mlp.3                    Conv1×1 dim->2dim, BN, act, Conv1×1 2dim->dim
    stages.{1,3,5}.reduction / .norm                         PatchMerging: Conv k2 s2 (no bias) + BN
    avgpool_pre_head.1                                       AdaptiveAvgPool2d(1), Conv1×1 -> 1280, act
    head                                                     Linear(1280, num_classes)

(timm's ``fasternet_*`` renames these: ``stages.i.downsample``, ``conv_head``, ``classifier``.)

Each variant is data (``VARIANTS``) plus one builder, registered as ``fasternet_t0`` …
``fasternet_l`` in the model registry. Stochastic depth is a training-time option and is
left out (``drop_path`` is an ``nn.Identity``, which has no state, so keys are unaffected).
"""

from __future__ import annotations

import copy
from dataclasses import asdict, dataclass
from functools import partial
from pathlib import Path
from typing import Any, Mapping

import torch
from torch import nn
from torch.nn.utils.fusion import fuse_conv_bn_eval

from operators._registry import InvalidParameter
from operators.models import ModelDef, register_model
from operators.pconv import FORWARD_MODES, PartialConv

ACTIVATIONS = ("gelu", "relu")


@dataclass(frozen=True)
class FasterNetVariant:
    """One variant's architecture, as in the official ``cfg/fasternet_*.yaml``.

    ``n_div`` = 4 there means the PConv ratio r = 1/n_div = 1/4 (c_p = dim // 4); here the
    ratio is a build option whose default is 1/4. ``drop_path_rate`` is the training value,
    recorded for reference only (inference has no stochastic depth)."""

    embed_dim: int
    depths: tuple[int, ...]
    act: str
    drop_path_rate: float
    mlp_ratio: float = 2.0
    patch_size: int = 4
    patch_stride: int = 4
    patch_size2: int = 2
    patch_stride2: int = 2
    feature_dim: int = 1280


VARIANTS: dict[str, FasterNetVariant] = {
    "t0": FasterNetVariant(embed_dim=40, depths=(1, 2, 8, 2), act="gelu", drop_path_rate=0.0),
    "t1": FasterNetVariant(embed_dim=64, depths=(1, 2, 8, 2), act="gelu", drop_path_rate=0.02),
    "t2": FasterNetVariant(embed_dim=96, depths=(1, 2, 8, 2), act="relu", drop_path_rate=0.05),
    "s": FasterNetVariant(embed_dim=128, depths=(1, 2, 13, 2), act="relu", drop_path_rate=0.1),
    "m": FasterNetVariant(embed_dim=144, depths=(3, 4, 18, 3), act="relu", drop_path_rate=0.2),
    "l": FasterNetVariant(embed_dim=192, depths=(3, 4, 18, 3), act="relu", drop_path_rate=0.3),
}


def _activation(act: str) -> nn.Module:
    # The official code uses nn.GELU() and nn.ReLU(inplace=True).
    return nn.GELU() if act == "gelu" else nn.ReLU(inplace=True)


class MLPBlock(nn.Module):
    """x + mlp(PConv(x)); mlp = Conv1×1 (dim -> mlp_ratio·dim), BN, act, Conv1×1 (back to dim)."""

    def __init__(self, dim: int, ratio: float, mlp_ratio: float, act: str, forward_mode: str):
        super().__init__()
        hidden = int(dim * mlp_ratio)
        self.drop_path = nn.Identity()
        self.mlp = nn.Sequential(
            nn.Conv2d(dim, hidden, 1, bias=False),
            nn.BatchNorm2d(hidden),
            _activation(act),
            nn.Conv2d(hidden, dim, 1, bias=False),
        )
        self.spatial_mixing = PartialConv(dim, ratio, kernel_size=3, forward_mode=forward_mode)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.drop_path(self.mlp(self.spatial_mixing(x)))


class BasicStage(nn.Module):
    def __init__(self, dim: int, depth: int, ratio: float, mlp_ratio: float, act: str,
                 forward_mode: str):
        super().__init__()
        self.blocks = nn.Sequential(*(MLPBlock(dim, ratio, mlp_ratio, act, forward_mode)
                                      for _ in range(depth)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.blocks(x)


class PatchEmbed(nn.Module):
    def __init__(self, patch_size: int, patch_stride: int, in_chans: int, embed_dim: int):
        super().__init__()
        self.proj = nn.Conv2d(in_chans, embed_dim, patch_size, stride=patch_stride, bias=False)
        self.norm = nn.BatchNorm2d(embed_dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.norm(self.proj(x))


class PatchMerging(nn.Module):
    def __init__(self, patch_size2: int, patch_stride2: int, dim: int):
        super().__init__()
        self.reduction = nn.Conv2d(dim, 2 * dim, patch_size2, stride=patch_stride2, bias=False)
        self.norm = nn.BatchNorm2d(2 * dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.norm(self.reduction(x))


class FasterNet(nn.Module):
    """The classification FasterNet (official ``fork_feat=False``: no per-stage output norms).

    ``stages`` alternates BasicStage and PatchMerging (7 entries for 4 stages), as officially.
    ``forward_mode`` 'slicing' is inference only (PartialConv raises in training mode)."""

    def __init__(self, embed_dim: int = 96, depths: tuple[int, ...] = (1, 2, 8, 2),
                 act: str = "relu", ratio: float = 0.25, mlp_ratio: float = 2.0,
                 patch_size: int = 4, patch_stride: int = 4, patch_size2: int = 2,
                 patch_stride2: int = 2, feature_dim: int = 1280, num_classes: int = 1000,
                 in_chans: int = 3, forward_mode: str = "split_cat"):
        super().__init__()
        self.num_classes = num_classes
        self.num_features = embed_dim * 2 ** (len(depths) - 1)
        self.patch_embed = PatchEmbed(patch_size, patch_stride, in_chans, embed_dim)
        stages: list[nn.Module] = []
        for i, depth in enumerate(depths):
            dim = embed_dim * 2**i
            stages.append(BasicStage(dim, depth, ratio, mlp_ratio, act, forward_mode))
            if i < len(depths) - 1:
                stages.append(PatchMerging(patch_size2, patch_stride2, dim))
        self.stages = nn.Sequential(*stages)
        self.avgpool_pre_head = nn.Sequential(
            nn.AdaptiveAvgPool2d(1),
            nn.Conv2d(self.num_features, feature_dim, 1, bias=False),
            _activation(act),
        )
        self.head = nn.Linear(feature_dim, num_classes) if num_classes > 0 else nn.Identity()

    def reset_parameters(self, generator: torch.Generator | None = None) -> None:
        """The official init: conv and linear weights ~ truncated normal (std 0.02, cut at ±2),
        biases 0; BN keeps PyTorch's (weight 1, bias 0, running mean 0, var 1)."""
        for m in self.modules():
            if isinstance(m, (nn.Conv2d, nn.Linear)):
                nn.init.trunc_normal_(m.weight, std=0.02, generator=generator)
                if m.bias is not None:
                    nn.init.zeros_(m.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.stages(self.patch_embed(x))
        x = torch.flatten(self.avgpool_pre_head(x), 1)
        return self.head(x)


def build_fasternet(variant: str, *, ratio: float = 0.25, forward_mode: str = "split_cat",
                    act: str | None = None, num_classes: int = 1000,
                    seed: int | None = None) -> FasterNet:
    """A FasterNet variant ('t0', 't1', 't2', 's', 'm', 'l'), randomly initialised.

    ``ratio`` is the PConv ratio r = c_p/c (official n_div = 4 -> 1/4); ``act`` overrides the
    variant's activation ('gelu' or 'relu'); ``seed`` makes the init independent of the global
    RNG (without it, ``torch.manual_seed`` beforehand makes it deterministic). Returned in
    train mode, as nn.Module builds it."""
    try:
        arch = VARIANTS[variant.lower()]
    except KeyError:
        raise InvalidParameter("variant", f"unknown FasterNet variant {variant!r}; "
                               f"known: {', '.join(VARIANTS)}") from None
    act = (act or arch.act).lower()
    if act not in ACTIVATIONS:
        raise InvalidParameter("act", f"activation {act!r} is not one of {', '.join(ACTIVATIONS)}")
    if forward_mode not in FORWARD_MODES:
        raise InvalidParameter("forward_mode", f"{forward_mode!r} is not one of {', '.join(FORWARD_MODES)}")
    if num_classes < 0:
        raise InvalidParameter("num_classes", f"num_classes must be >= 0 (0: no head), not {num_classes}")
    params = {k: v for k, v in asdict(arch).items() if k not in ("act", "drop_path_rate")}
    model = FasterNet(**params, act=act, ratio=ratio, num_classes=num_classes,
                      forward_mode=forward_mode)
    generator = torch.Generator().manual_seed(seed) if seed is not None else None
    model.reset_parameters(generator)
    return model


# ----------------------------------------------------------------------------- counting rule

def count_params_without_bn(model: nn.Module) -> int:
    """Parameters outside BatchNorm layers (BN affine weight/bias excluded; buffers never count).

    This is the convention that reproduces the published FasterNet parameter counts: Table 8 /
    README 3.9/7.6/15.0/31.1/53.5/93.4 M are, at printed precision, the parameters of the conv
    and linear layers only (analytic 3.896/7.580/14.960/31.140/53.456/93.377 M). Counting BN
    affine parameters (3.905/.../93.465 M, what fvcore's ``parameter_count`` reports for the
    unfused model) or BN folded into conv biases (3.901/.../93.421 M) does not match all six.
    Table 3 prints 93.5 for L, so it is not consistently one convention."""
    return sum(p.numel() for m in model.modules() if not isinstance(m, nn.modules.batchnorm._BatchNorm)
               for p in m.parameters(recurse=False))


# ----------------------------------------------------------------------------- BN fusion

def fuse_bn(model: nn.Module, inplace: bool = False) -> nn.Module:
    """Fold every BatchNorm2d that directly follows a Conv2d in the same container into that
    conv (which gains a bias); the BN becomes ``nn.Identity`` so that key paths stay put.

    "Directly follows" means the next child registered in the same parent module, as in the
    official ``utils/fuse_conv_bn.py`` (from mmcv), except that any other child in between
    breaks the pair here. In FasterNet that is patch_embed.proj+norm, each PatchMerging's
    reduction+norm and each MLP's first conv + BN. The model must be in eval mode (BN's
    running statistics are what gets folded). Returns a fused copy unless ``inplace``."""
    if model.training:
        raise ValueError("fuse_bn folds BN running statistics: call model.eval() first")
    if not inplace:
        model = copy.deepcopy(model)
    _fuse_children(model)
    return model


def _fuse_children(module: nn.Module) -> None:
    last_conv_name: str | None = None
    for name, child in list(module.named_children()):
        if isinstance(child, nn.BatchNorm2d) and last_conv_name is not None:
            conv = module._modules[last_conv_name]
            if child.running_mean is not None and conv.out_channels == child.num_features:
                module._modules[last_conv_name] = fuse_conv_bn_eval(conv, child)
                module._modules[name] = nn.Identity()
            last_conv_name = None
        elif isinstance(child, nn.Conv2d):
            last_conv_name = name
        else:
            last_conv_name = None
            _fuse_children(child)


# ----------------------------------------------------------------------------- official weights

def load_official_weights(model: nn.Module, path: str | Path) -> nn.Module:
    """Load an official FasterNet checkpoint into an (unfused) model, strictly; returns it.

    Accepts a raw state dict (the released ``fasternet_*.pth``), or a dict holding one under
    'state_dict' (PyTorch Lightning ``.ckpt``: its 'model.' key prefix is stripped and keys
    outside the model dropped) or under 'model'. Read with ``weights_only=True``.
    A missing file raises FileNotFoundError; an unreadable file or one whose keys or shapes
    do not match the model raises ValueError naming the first few offending keys. Only BN's
    ``num_batches_tracked`` counters, unused at inference, may be absent."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no checkpoint file at {path}")
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises several types for a corrupt or unsafe file
        first_line = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
        raise ValueError(f"{path} is not a checkpoint torch.load(weights_only=True) can read "
                         f"({type(exc).__name__}: {first_line})") from exc
    state_dict = _extract_state_dict(checkpoint, path)
    _check_matches(model, state_dict, path)
    model.load_state_dict(state_dict, strict=False)  # strictness checked above, with better messages
    return model


def _extract_state_dict(checkpoint: Any, path: Path) -> dict[str, torch.Tensor]:
    if isinstance(checkpoint, Mapping) and isinstance(checkpoint.get("state_dict"), Mapping):
        state_dict = dict(checkpoint["state_dict"])
        if any(k.startswith("model.") for k in state_dict):  # Lightning: LitModel.model
            state_dict = {k[len("model."):]: v for k, v in state_dict.items() if k.startswith("model.")}
    elif isinstance(checkpoint, Mapping) and isinstance(checkpoint.get("model"), Mapping):
        state_dict = dict(checkpoint["model"])
    elif isinstance(checkpoint, Mapping):
        state_dict = dict(checkpoint)
    else:
        raise ValueError(f"{path} holds a {type(checkpoint).__name__}, not a state dict")
    bad = [k for k, v in state_dict.items() if not isinstance(k, str) or not isinstance(v, torch.Tensor)]
    if bad or not state_dict:
        raise ValueError(f"{path} does not hold a state dict of tensors"
                         + (f" (e.g. entry {bad[0]!r})" if bad else " (it is empty)"))
    return state_dict


def _first(items: list[str], n: int = 5) -> str:
    return ", ".join(items[:n]) + (f", … ({len(items) - n} more)" if len(items) > n else "")


def _check_matches(model: nn.Module, state_dict: Mapping[str, torch.Tensor], path: Path) -> None:
    expected = model.state_dict()
    missing = [k for k in expected if k not in state_dict and not k.endswith("num_batches_tracked")]
    unexpected = [k for k in state_dict if k not in expected]
    shapes = [f"{k} {tuple(v.shape)} in file vs {tuple(expected[k].shape)} in model"
              for k, v in state_dict.items() if k in expected and v.shape != expected[k].shape]
    if not (missing or unexpected or shapes):
        return
    problems = []
    if missing:
        problems.append(f"{len(missing)} missing key(s): {_first(missing)}")
    if unexpected:
        problems.append(f"{len(unexpected)} unexpected key(s): {_first(unexpected)}")
    if shapes:
        problems.append(f"{len(shapes)} shape mismatch(es): {_first(shapes, 3)}")
    hint = ""
    if not any(isinstance(m, nn.BatchNorm2d) for m in model.modules()):
        hint = " (the model has no BatchNorm: load weights before fuse_bn)"
    raise ValueError(f"{path} does not match {type(model).__name__}: " + "; ".join(problems) + hint)


# ----------------------------------------------------------------------------- registry

for _key, _arch in VARIANTS.items():
    register_model(ModelDef(
        name=f"fasternet_{_key}",
        description=(f"FasterNet-{_key.upper()}: embed_dim {_arch.embed_dim}, depths "
                     f"{'/'.join(map(str, _arch.depths))}, {_arch.act.upper()}, PConv r=1/4"),
        build=partial(build_fasternet, _key),
        defaults={"ratio": 0.25, "forward_mode": "split_cat", "act": _arch.act,
                  "num_classes": 1000, "seed": None},
        input_resolution=224,
        paper_label=f"FasterNet-{_key.upper()}",
    ))
del _key, _arch
