"""CycleMLP (Chen et al., ICLR 2022): an MLP-like network whose token mixing is Cycle FC, a
channel FC that reads each input channel at a spatial offset cycling with the channel index.

Module and attribute names follow the official release (github.com/ShoufaChen/CycleMLP,
``cycle_mlp.py``, classification ``CycleNet`` with ``fork_feat=False``), so its checkpoints load
strictly:

    patch_embed.proj                                  Conv k7 s4 p2 (stem; its norm is an Identity)
    network.{0,2,4,6}.{j}                             CycleBlock, channels-last (B, H, W, C)
        .norm1 / .norm2                               LayerNorm
        .attn.mlp_c                                   Linear, no bias (the channel branch)
        .attn.sfc_h / .sfc_w                          CycleFC (1×3) and (3×1): weight, bias, offset buffer
        .attn.reweight.fc1 / .fc2                     Linear dim -> dim/4 -> 3·dim (branch weights)
        .attn.proj                                    Linear
        .mlp.fc1 / .mlp.fc2                           Linear dim -> mlp_ratio·dim -> dim, GELU between
    network.{1,3,5}.proj                              Downsample: Conv k3 s2 p1
    norm, head                                        final LayerNorm, Linear classifier on the mean token

Cycle FC is ``torchvision.ops.deform_conv2d`` with a 1×1 kernel, one offset group per input
channel and fixed integer offsets (the ``offset`` buffer): channel i is read at a shift of
(i + 1) mod 3 - 1 along one axis. fvcore has no formula for it; ``flopsbench.counting`` adds
the authors' (a 1×1 conv's multiply-adds, sampling not counted).

torchvision gives ``deform_conv2d`` no ONNX export; this module registers one, to ONNX's
DeformConv (opset 19, which onnxruntime's CPU provider runs), and ``CycleNet.onnx_opset`` asks
the exporter for that opset.

Each variant is data (``VARIANTS``) plus one builder, registered as ``cyclemlp_b1`` and
``cyclemlp_b2`` by ``flopsbench_zoo.baselines``. Stochastic depth and dropout are training-time
options and are left out (no state, so keys are unaffected).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn
from torch.onnx import symbolic_helper

try:
    from torchvision.ops import deform_conv2d
except ModuleNotFoundError as exc:  # a core install; flopsbench_zoo.baselines registers CycleMLP unavailable
    from flopsbench_zoo.baselines import missing_extra

    _reason = missing_extra(("torchvision",))
    if _reason is None:  # torchvision is there: some other import failed
        raise
    raise ModuleNotFoundError(f"CycleMLP's Cycle FC is torchvision's deform_conv2d: {_reason}",
                              name="torchvision") from exc


DEFORM_CONV_OPSET = 19  # ONNX's DeformConv entered the standard at opset 19


def _deform_conv2d_to_onnx(g, input, weight, offset, mask, bias, stride_h, stride_w, pad_h, pad_w,
                           dil_h, dil_w, groups, offset_groups, use_mask):
    """``torchvision::deform_conv2d`` as ONNX DeformConv (same inputs and attributes; torchvision
    always passes a bias, zeros if the layer has none, and a mask only used when use_mask)."""
    if g.opset < DEFORM_CONV_OPSET:
        raise RuntimeError(f"torchvision::deform_conv2d exports as ONNX DeformConv, which needs opset "
                           f"{DEFORM_CONV_OPSET}; this export asked for opset {g.opset}")
    inputs = [input, weight, offset, bias] + ([mask] if use_mask else [])
    return g.op("DeformConv", *inputs, strides_i=[stride_h, stride_w], pads_i=[pad_h, pad_w, pad_h, pad_w],
                dilations_i=[dil_h, dil_w], group_i=groups, offset_group_i=offset_groups)


torch.onnx.register_custom_op_symbolic(
    "torchvision::deform_conv2d",
    symbolic_helper.parse_args("v", "v", "v", "v", "v", "i", "i", "i", "i", "i", "i", "i", "i", "b")(
        _deform_conv2d_to_onnx),
    1)  # every opset, so that one below 19 fails saying why


@dataclass(frozen=True)
class CycleMLPVariant:
    """One variant's architecture, as in the official ``CycleMLP_B1`` … (all four transitions on)."""

    layers: tuple[int, int, int, int]
    embed_dims: tuple[int, int, int, int] = (64, 128, 320, 512)
    mlp_ratios: tuple[int, int, int, int] = (4, 4, 4, 4)


VARIANTS: dict[str, CycleMLPVariant] = {
    "b1": CycleMLPVariant(layers=(2, 2, 4, 2)),
    "b2": CycleMLPVariant(layers=(2, 3, 10, 3)),
}


class Mlp(nn.Module):
    def __init__(self, in_features: int, hidden_features: int, out_features: int | None = None):
        super().__init__()
        self.fc1 = nn.Linear(in_features, hidden_features)
        self.act = nn.GELU()
        self.fc2 = nn.Linear(hidden_features, out_features or in_features)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(self.act(self.fc1(x)))


def cycle_offsets(channels: int, kernel_size: tuple[int, int]) -> torch.Tensor:
    """The official fixed offsets, shaped (1, 2·channels, 1, 1) as (dy, dx) per channel: along
    the kernel's long axis of length k, channel i moves by (i + k//2) mod k - k//2."""
    kh, kw = kernel_size
    if kh != 1 and kw != 1:
        raise ValueError(f"a Cycle FC kernel is 1×k or k×1, not {kh}×{kw}")
    k = max(kh, kw)
    shift = (torch.arange(channels) + k // 2) % k - k // 2
    zero = torch.zeros(channels, dtype=shift.dtype)
    dy, dx = (zero, shift) if kh == 1 else (shift, zero)
    return torch.stack((dy, dx), dim=1).reshape(1, 2 * channels, 1, 1).float()


class CycleFC(nn.Module):
    """A channel FC (1×1 weight) whose input channel i is sampled at a fixed offset: stride 1,
    no padding, as the official class insists."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: tuple[int, int]):
        super().__init__()
        self.in_channels = in_channels
        self.out_channels = out_channels
        self.kernel_size = kernel_size
        self.weight = nn.Parameter(torch.empty(out_channels, in_channels, 1, 1))
        self.bias = nn.Parameter(torch.empty(out_channels))
        self.register_buffer("offset", cycle_offsets(in_channels, kernel_size))
        self.reset_parameters()

    def reset_parameters(self) -> None:
        # As officially (a conv's), though CycleNet re-initialises it (trunc normal, bias 0).
        nn.init.kaiming_uniform_(self.weight, a=math.sqrt(5))
        bound = 1 / math.sqrt(self.in_channels)
        nn.init.uniform_(self.bias, -bound, bound)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        B, _, H, W = x.shape
        return deform_conv2d(x, self.offset.expand(B, -1, H, W), self.weight, self.bias)

    def extra_repr(self) -> str:
        return f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}"


class CycleMLP(nn.Module):
    """Token mixing: Cycle FC along H, along W, and a channel FC, mixed by per-channel weights
    computed from their pooled sum (a split attention over the three branches)."""

    def __init__(self, dim: int):
        super().__init__()
        self.mlp_c = nn.Linear(dim, dim, bias=False)  # official qkv_bias=False
        self.sfc_h = CycleFC(dim, dim, (1, 3))
        self.sfc_w = CycleFC(dim, dim, (3, 1))
        self.reweight = Mlp(dim, dim // 4, dim * 3)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        B, H, W, C = x.shape
        h = self.sfc_h(x.permute(0, 3, 1, 2)).permute(0, 2, 3, 1)
        w = self.sfc_w(x.permute(0, 3, 1, 2)).permute(0, 2, 3, 1)
        c = self.mlp_c(x)
        a = (h + w + c).permute(0, 3, 1, 2).flatten(2).mean(2)
        a = self.reweight(a).reshape(B, C, 3).permute(2, 0, 1).softmax(dim=0).unsqueeze(2).unsqueeze(2)
        return self.proj(h * a[0] + w * a[1] + c * a[2])


class CycleBlock(nn.Module):
    def __init__(self, dim: int, mlp_ratio: float):
        super().__init__()
        self.norm1 = nn.LayerNorm(dim)
        self.attn = CycleMLP(dim)
        self.norm2 = nn.LayerNorm(dim)
        self.mlp = Mlp(dim, int(dim * mlp_ratio))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.norm1(x))  # officially divided by skip_lam, 1.0 in every variant
        return x + self.mlp(self.norm2(x))


class PatchEmbedOverlapping(nn.Module):
    def __init__(self, in_chans: int, embed_dim: int):
        super().__init__()
        self.proj = nn.Conv2d(in_chans, embed_dim, kernel_size=7, stride=4, padding=2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.proj(x)


class Downsample(nn.Module):
    """Channels-last in and out; a 3×3 stride-2 conv between stages."""

    def __init__(self, in_embed_dim: int, out_embed_dim: int):
        super().__init__()
        self.proj = nn.Conv2d(in_embed_dim, out_embed_dim, kernel_size=3, stride=2, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.proj(x.permute(0, 3, 1, 2)).permute(0, 2, 3, 1)


class CycleNet(nn.Module):
    """The classification CycleMLP: stages alternate with Downsample in ``network`` (7 entries)."""

    onnx_opset = DEFORM_CONV_OPSET  # the least ONNX opset it exports at (flopsbench.onnx_export reads it)

    def __init__(self, layers: tuple[int, ...], embed_dims: tuple[int, ...], mlp_ratios: tuple[int, ...],
                 in_chans: int = 3, num_classes: int = 1000):
        super().__init__()
        self.num_classes = num_classes
        self.patch_embed = PatchEmbedOverlapping(in_chans, embed_dims[0])
        network: list[nn.Module] = []
        for i, depth in enumerate(layers):
            network.append(nn.Sequential(*(CycleBlock(embed_dims[i], mlp_ratios[i]) for _ in range(depth))))
            if i < len(layers) - 1:
                network.append(Downsample(embed_dims[i], embed_dims[i + 1]))
        self.network = nn.ModuleList(network)
        self.norm = nn.LayerNorm(embed_dims[-1])
        self.head = nn.Linear(embed_dims[-1], num_classes) if num_classes > 0 else nn.Identity()

    def reset_parameters(self, generator: torch.Generator | None = None) -> None:
        """The official init: linear and Cycle FC weights ~ truncated normal (std 0.02, cut at
        ±2), their biases 0, LayerNorm 1 and 0; convs keep PyTorch's."""
        for m in self.modules():
            if isinstance(m, (nn.Linear, CycleFC)):
                nn.init.trunc_normal_(m.weight, std=0.02, generator=generator)
                if m.bias is not None:
                    nn.init.zeros_(m.bias)
            elif isinstance(m, nn.LayerNorm):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.patch_embed(x).permute(0, 2, 3, 1)  # B, H, W, C
        for stage in self.network:
            x = stage(x)
        x = self.norm(x.reshape(x.shape[0], -1, x.shape[-1]))
        return self.head(x.mean(1))


def build_cyclemlp(variant: str, *, num_classes: int = 1000, seed: int | None = None) -> CycleNet:
    """A CycleMLP variant ('b1', 'b2'), randomly initialised the official way; ``seed`` makes
    the init independent of the global RNG. Returned in train mode."""
    arch = VARIANTS[variant]
    generator = torch.Generator().manual_seed(seed) if seed is not None else None
    with torch.random.fork_rng(devices=[], enabled=seed is not None):
        if seed is not None:
            torch.manual_seed(seed)  # the convs' PyTorch init
        model = CycleNet(arch.layers, arch.embed_dims, arch.mlp_ratios, num_classes=num_classes)
    model.reset_parameters(generator)
    return model
