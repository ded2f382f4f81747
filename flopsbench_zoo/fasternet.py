"""FasterNet (Chen et al., CVPR 2023): PConv + two 1×1 convs per block, four stages.

Module and attribute names follow the official release (github.com/JierunChen/FasterNet,
``models/fasternet.py`` with ``fork_feat=False``), so its checkpoints load strictly:

    patch_embed.proj / patch_embed.norm                      Conv k4 s4 (no bias) + BN
    stages.{0,2,4,6}.blocks.{j}                              BasicStage -> MLPBlock
        .spatial_mixing.partial_conv3                        PConv (flopsbench_zoo.pconv.PartialConv)
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

from dataclasses import asdict, dataclass
from functools import partial

import torch
from torch import nn

from flopsbench_zoo._registry import InvalidParameter
from flopsbench_zoo.models import ModelDef, register_model
from flopsbench_zoo.pconv import FORWARD_MODES, PartialConv

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
