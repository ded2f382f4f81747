"""Folding BatchNorm into the preceding convolution for inference (the paper fuses BN)."""

from __future__ import annotations

import copy

from torch import nn
from torch.nn.utils.fusion import fuse_conv_bn_eval


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
        # Exactly BatchNorm2d: subclasses such as timm's BatchNormAct2d also apply an activation.
        if type(child) is nn.BatchNorm2d and last_conv_name is not None:
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
