"""PVT v1, the Pyramid Vision Transformer (Wang et al., ICCV 2021): four stages of transformer
blocks whose attention shrinks keys and values by a strided conv (spatial-reduction attention).

Module and attribute names follow the official release (github.com/whai362/PVT, ``pvt.py`` of
its v1 code, also ``classification/pvt.py``), so its checkpoints load strictly:

    patch_embed{i}.proj / .norm                  Conv k=s=4 (stage 1) or 2, + LayerNorm
    pos_embed{i}                                 (1, tokens, dim); stage 4 has one more, for cls_token
    block{i}.{j}.norm1 / .norm2                  LayerNorm (eps 1e-6)
    block{i}.{j}.attn.q / .kv / .proj            Linear
    block{i}.{j}.attn.sr / .norm                 Conv k=s=sr_ratio + LayerNorm (eps 1e-5), if sr_ratio > 1
    block{i}.{j}.mlp.fc1 / .fc2                  Linear dim -> mlp_ratio·dim -> dim, GELU between
    norm, cls_token, head                        final LayerNorm, class token, Linear classifier

Each variant is data (``VARIANTS``) plus one builder, registered as ``pvt_tiny`` … ``pvt_large``
by ``flopsbench_zoo.baselines``. Dropout and stochastic depth are training-time options and are left out
(``pos_drop{i}`` is an ``nn.Identity``: no state, so keys are unaffected).

The model is built for 224×224, as officially, and its forward is ``classification/pvt.py``'s:
the position embeddings of stages 2–4 always go through a bilinear resize to their token grid,
even at 224 where it changes nothing, because the official ``_get_pos_embed`` compares every
stage's grid with stage 1's token count. fvcore counts that resize (4 FLOPs per output element,
0.75 M at 224), and the paper's Table 3 FLOPs include it: 6.69 G for PVT-Medium is 6.6849 G
without it. Stage 1's embedding is resized only at another input side. (The official comparison
would skip the stage-2 resize where stage 2's grid happens to hold stage 1's built token count,
at 448, and fail there; here only stage 1 is compared with its own grid.)
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import partial

import torch
import torch.nn.functional as F
from torch import nn

IMG_SIZE = 224


@dataclass(frozen=True)
class PVTVariant:
    """One variant's architecture, as in the official ``pvt_tiny`` … ``pvt_large``."""

    depths: tuple[int, int, int, int]
    embed_dims: tuple[int, int, int, int] = (64, 128, 320, 512)
    num_heads: tuple[int, int, int, int] = (1, 2, 5, 8)
    mlp_ratios: tuple[int, int, int, int] = (8, 8, 4, 4)
    sr_ratios: tuple[int, int, int, int] = (8, 4, 2, 1)
    patch_size: int = 4


VARIANTS: dict[str, PVTVariant] = {
    "tiny": PVTVariant(depths=(2, 2, 2, 2)),
    "small": PVTVariant(depths=(3, 4, 6, 3)),
    "medium": PVTVariant(depths=(3, 4, 18, 3)),
    "large": PVTVariant(depths=(3, 8, 27, 3)),
}

_norm = partial(nn.LayerNorm, eps=1e-6)  # the official norm_layer of every variant


class Mlp(nn.Module):
    def __init__(self, dim: int, hidden: int):
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.act = nn.GELU()
        self.fc2 = nn.Linear(hidden, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(self.act(self.fc1(x)))


class Attention(nn.Module):
    """Spatial-reduction attention: queries from every token; keys and values from the tokens
    downsampled by a sr_ratio×sr_ratio strided conv (and LayerNorm) when sr_ratio > 1."""

    def __init__(self, dim: int, num_heads: int, sr_ratio: int):
        super().__init__()
        self.dim = dim
        self.num_heads = num_heads
        self.scale = (dim // num_heads) ** -0.5
        self.q = nn.Linear(dim, dim)   # qkv_bias=True in every official variant
        self.kv = nn.Linear(dim, dim * 2)
        self.proj = nn.Linear(dim, dim)
        self.sr_ratio = sr_ratio
        if sr_ratio > 1:
            self.sr = nn.Conv2d(dim, dim, kernel_size=sr_ratio, stride=sr_ratio)
            self.norm = nn.LayerNorm(dim)  # officially the default eps, unlike the blocks' norms

    def forward(self, x: torch.Tensor, H: int, W: int) -> torch.Tensor:
        B, N, C = x.shape
        q = self.q(x).reshape(B, N, self.num_heads, C // self.num_heads).permute(0, 2, 1, 3)
        if self.sr_ratio > 1:
            x = self.sr(x.permute(0, 2, 1).reshape(B, C, H, W)).reshape(B, C, -1).permute(0, 2, 1)
            x = self.norm(x)
        kv = self.kv(x).reshape(B, -1, 2, self.num_heads, C // self.num_heads).permute(2, 0, 3, 1, 4)
        k, v = kv[0], kv[1]
        attn = ((q @ k.transpose(-2, -1)) * self.scale).softmax(dim=-1)
        return self.proj((attn @ v).transpose(1, 2).reshape(B, N, C))


class Block(nn.Module):
    def __init__(self, dim: int, num_heads: int, mlp_ratio: int, sr_ratio: int):
        super().__init__()
        self.norm1 = _norm(dim)
        self.attn = Attention(dim, num_heads, sr_ratio)
        self.norm2 = _norm(dim)
        self.mlp = Mlp(dim, dim * mlp_ratio)

    def forward(self, x: torch.Tensor, H: int, W: int) -> torch.Tensor:
        x = x + self.attn(self.norm1(x), H, W)
        return x + self.mlp(self.norm2(x))


class PatchEmbed(nn.Module):
    """Non-overlapping patches (Conv k = stride = patch_size) to tokens, then LayerNorm."""

    def __init__(self, img_size: int, patch_size: int, in_chans: int, embed_dim: int):
        super().__init__()
        self.patch_size = patch_size
        self.H = self.W = img_size // patch_size
        self.num_patches = self.H * self.W
        self.proj = nn.Conv2d(in_chans, embed_dim, kernel_size=patch_size, stride=patch_size)
        self.norm = nn.LayerNorm(embed_dim)  # officially the default eps

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, tuple[int, int]]:
        x = self.proj(x)
        H, W = x.shape[-2:]
        return self.norm(x.flatten(2).transpose(1, 2)), (H, W)


class PyramidVisionTransformer(nn.Module):
    """The classification PVT v1: the class token joins in stage 4 and alone feeds the head."""

    def __init__(self, depths: tuple[int, ...], embed_dims: tuple[int, ...], num_heads: tuple[int, ...],
                 mlp_ratios: tuple[int, ...], sr_ratios: tuple[int, ...], patch_size: int = 4,
                 img_size: int = IMG_SIZE, in_chans: int = 3, num_classes: int = 1000):
        super().__init__()
        self.num_classes = num_classes
        self.depths = depths
        self.num_stages = len(depths)
        for i, depth in enumerate(depths):
            patch_embed = PatchEmbed(img_size if i == 0 else img_size // 2 ** (i + 1),
                                     patch_size if i == 0 else 2,
                                     in_chans if i == 0 else embed_dims[i - 1], embed_dims[i])
            extra = 1 if i == self.num_stages - 1 else 0  # the class token's position
            setattr(self, f"patch_embed{i + 1}", patch_embed)
            setattr(self, f"pos_embed{i + 1}",
                    nn.Parameter(torch.zeros(1, patch_embed.num_patches + extra, embed_dims[i])))
            setattr(self, f"pos_drop{i + 1}", nn.Identity())
            setattr(self, f"block{i + 1}", nn.ModuleList(
                Block(embed_dims[i], num_heads[i], mlp_ratios[i], sr_ratios[i]) for _ in range(depth)))
        self.norm = _norm(embed_dims[-1])
        self.cls_token = nn.Parameter(torch.zeros(1, 1, embed_dims[-1]))
        self.head = nn.Linear(embed_dims[-1], num_classes) if num_classes > 0 else nn.Identity()

    def reset_parameters(self, generator: torch.Generator | None = None) -> None:
        """The official init: position embeddings, class token and linear weights ~ truncated
        normal (std 0.02, cut at ±2), linear biases 0, LayerNorm 1 and 0; convs keep PyTorch's."""
        for i in range(self.num_stages):
            nn.init.trunc_normal_(getattr(self, f"pos_embed{i + 1}"), std=0.02, generator=generator)
        nn.init.trunc_normal_(self.cls_token, std=0.02, generator=generator)
        for m in self.modules():
            if isinstance(m, nn.Linear):
                nn.init.trunc_normal_(m.weight, std=0.02, generator=generator)
                nn.init.zeros_(m.bias)
            elif isinstance(m, nn.LayerNorm):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)

    def _pos_embed(self, pos_embed: torch.Tensor, patch_embed: PatchEmbed, H: int, W: int) -> torch.Tensor:
        """``pos_embed`` for an H×W token grid: stage 1's as built on its built grid, else resized
        (stages 2–4 always, as officially: see the module docstring)."""
        if patch_embed is self.patch_embed1 and (H, W) == (patch_embed.H, patch_embed.W):
            return pos_embed
        grid = pos_embed.reshape(1, patch_embed.H, patch_embed.W, -1).permute(0, 3, 1, 2)
        return F.interpolate(grid, size=(H, W), mode="bilinear").reshape(1, -1, H * W).permute(0, 2, 1)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        B = x.shape[0]
        for i in range(self.num_stages):
            patch_embed = getattr(self, f"patch_embed{i + 1}")
            pos_embed = getattr(self, f"pos_embed{i + 1}")
            x, (H, W) = patch_embed(x)
            if i == self.num_stages - 1:
                x = torch.cat((self.cls_token.expand(B, -1, -1), x), dim=1)
                pos_embed = torch.cat((pos_embed[:, :1], self._pos_embed(pos_embed[:, 1:], patch_embed, H, W)),
                                      dim=1)
            else:
                pos_embed = self._pos_embed(pos_embed, patch_embed, H, W)
            x = getattr(self, f"pos_drop{i + 1}")(x + pos_embed)
            for blk in getattr(self, f"block{i + 1}"):
                x = blk(x, H, W)
            if i != self.num_stages - 1:
                x = x.reshape(B, H, W, -1).permute(0, 3, 1, 2).contiguous()
        return self.norm(x)[:, 0]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.forward_features(x))


def build_pvt(variant: str, *, num_classes: int = 1000, seed: int | None = None) -> PyramidVisionTransformer:
    """A PVT v1 variant ('tiny', 'small', 'medium', 'large'), randomly initialised the official
    way; ``seed`` makes the init independent of the global RNG. Returned in train mode."""
    arch = VARIANTS[variant]
    generator = torch.Generator().manual_seed(seed) if seed is not None else None
    with torch.random.fork_rng(devices=[], enabled=seed is not None):
        if seed is not None:
            torch.manual_seed(seed)  # the convs' PyTorch init
        model = PyramidVisionTransformer(arch.depths, arch.embed_dims, arch.num_heads, arch.mlp_ratios,
                                         arch.sr_ratios, arch.patch_size, num_classes=num_classes)
    model.reset_parameters(generator)
    return model
