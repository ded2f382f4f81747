"""The paper's Table 3 baselines, from timm (torchvision where timm lacks one), as model entries.

Each baseline is one row of ``BASELINES`` (library, the library's model name, the Table 3 row
label, the library's default input side) plus one shared builder, registered under the
library's own name (``mobilenetv2_100``, ``shufflenet_v2_x1_5`` …) so users recognise it.
Models are built with random weights (never pretrained: nothing is downloaded).

timm and torchvision are imported inside the builders, not here: importing timm alone costs
1.5–2 s, and ``import flopsbench_zoo`` must stay fast. For the same reason ``input_resolution`` is
stored in the table rather than read from timm at import time; the tests check it against
timm's ``pretrained_cfg['input_size']`` (the default tag's), and torchvision's classifiers are
all 224.

Table 3 rows that neither library has, PVT v1 and CycleMLP, are defined in this package from
their authors' code (``flopsbench_zoo/pvt.py``, ``flopsbench_zoo/cyclemlp.py``, official module names) and
registered under the official model names, lower-cased (``pvt_tiny`` …, ``cyclemlp_b1`` …);
those modules are imported inside the builders too (CycleMLP needs torchvision).

``resolve_model(name)`` also reaches any timm model through ``timm:NAME``.

timm and torchvision come with the ``baselines`` extra, not the core install (which runs beside
any torch from 2.9, a CPU-only build included): without them the entries that need them stay registered
but unavailable, saying how to install them (``flopsbench model`` makes that an error row).
"""

from __future__ import annotations

import difflib
import importlib
import importlib.util
from dataclasses import dataclass
from functools import partial
from typing import Any

import torch
from torch import nn

from flopsbench_zoo._registry import InvalidParameter
from flopsbench_zoo.models import ModelDef, get_model, list_models, register_model

TIMM_PREFIX = "timm:"
DEFAULTS = {"num_classes": 1000, "seed": None}
INSTALL_EXTRA = "pip install 'flopsbench[baselines]'"
# The modules each library's models need (timm imports torchvision).
LIBRARY_NEEDS = {"timm": ("timm", "torchvision"), "torchvision": ("torchvision",)}


def missing_extra(modules: tuple[str, ...]) -> str | None:
    """Why ``modules`` cannot be imported here (the baselines extra is not installed), or None.
    Looks for them without importing them: importing timm costs seconds."""
    missing = [name for name in modules if importlib.util.find_spec(name) is None]
    if not missing:
        return None
    return f"needs the baselines extra ({' and '.join(missing)} not installed): {INSTALL_EXTRA}"


@dataclass(frozen=True)
class Baseline:
    library: str          # "timm" or "torchvision"
    name: str             # the library's model name, also the registered name
    paper_label: str      # the row's ``name`` in Table 3 (fasternet_published.json ``models``)
    input_resolution: int  # the library's default input side for this model


# Grouped by family, each family in Table 3 order.
BASELINES: tuple[Baseline, ...] = (
    Baseline("torchvision", "shufflenet_v2_x1_5", "ShuffleNetV2 x1.5", 224),
    Baseline("torchvision", "shufflenet_v2_x2_0", "ShuffleNetV2 x2", 224),
    Baseline("timm", "mobilenetv2_100", "MobileNetV2", 224),
    Baseline("timm", "mobilenetv2_140", "MobileNetV2 x1.4", 224),
    Baseline("timm", "mobilevit_xxs", "MobileViT-XXS", 256),
    Baseline("timm", "mobilevit_xs", "MobileViT-XS", 256),
    Baseline("timm", "mobilevit_s", "MobileViT-S", 256),
    Baseline("timm", "edgenext_xx_small", "EdgeNeXt-XXS", 256),
    Baseline("timm", "edgenext_x_small", "EdgeNeXt-XS", 256),
    Baseline("timm", "edgenext_small", "EdgeNeXt-S", 256),
    Baseline("timm", "ghostnet_130", "GhostNet x1.3", 224),
    Baseline("timm", "poolformer_s12", "PoolFormer-S12", 224),
    Baseline("timm", "poolformer_s24", "PoolFormer-S24", 224),
    Baseline("timm", "poolformer_s36", "PoolFormer-S36", 224),
    Baseline("timm", "poolformer_m36", "PoolFormer-M36", 224),
    Baseline("timm", "poolformer_m48", "PoolFormer-M48", 224),
    Baseline("timm", "resnet50", "ResNet50", 224),
    Baseline("timm", "convnext_tiny", "ConvNeXt-T", 224),
    Baseline("timm", "convnext_small", "ConvNeXt-S", 224),
    Baseline("timm", "convnext_base", "ConvNeXt-B", 224),
    Baseline("timm", "swin_tiny_patch4_window7_224", "Swin-T", 224),
    Baseline("timm", "swin_small_patch4_window7_224", "Swin-S", 224),
    Baseline("timm", "swin_base_patch4_window7_224", "Swin-B", 224),
)

@dataclass(frozen=True)
class OwnBaseline:
    """A Table 3 baseline no library has, defined in ``flopsbench_zoo``: ``module``'s ``builder``
    builds ``variant``."""

    name: str        # the official model name, lower-cased; the registered name
    paper_label: str
    module: str      # the flopsbench_zoo module defining the family
    builder: str     # its builder, called as builder(variant, num_classes=..., seed=...)
    variant: str
    source: str      # the official code it follows
    needs: tuple[str, ...] = ()  # modules from the baselines extra that it needs


_PVT_SOURCE = "PVT v1 (Wang et al., ICCV 2021), official github.com/whai362/PVT"
_CYCLEMLP_SOURCE = "CycleMLP (Chen et al., ICLR 2022), official github.com/ShoufaChen/CycleMLP"

OWN_BASELINES: tuple[OwnBaseline, ...] = (
    OwnBaseline("pvt_tiny", "PVT-Tiny", "flopsbench_zoo.pvt", "build_pvt", "tiny", _PVT_SOURCE),
    OwnBaseline("pvt_small", "PVT-Small", "flopsbench_zoo.pvt", "build_pvt", "small", _PVT_SOURCE),
    OwnBaseline("pvt_medium", "PVT-Medium", "flopsbench_zoo.pvt", "build_pvt", "medium", _PVT_SOURCE),
    OwnBaseline("pvt_large", "PVT-Large", "flopsbench_zoo.pvt", "build_pvt", "large", _PVT_SOURCE),
    OwnBaseline("cyclemlp_b1", "CycleMLP-B1", "flopsbench_zoo.cyclemlp", "build_cyclemlp", "b1", _CYCLEMLP_SOURCE,
                ("torchvision",)),
    OwnBaseline("cyclemlp_b2", "CycleMLP-B2", "flopsbench_zoo.cyclemlp", "build_cyclemlp", "b2", _CYCLEMLP_SOURCE,
                ("torchvision",)),
)


# ----------------------------------------------------------------------------- builders

def _check_num_classes(num_classes: int) -> None:
    if not isinstance(num_classes, int) or num_classes < 0:
        raise InvalidParameter("num_classes", f"num_classes must be an int >= 0 (0: no head), "
                               f"not {num_classes!r}")


def _seeded(seed: int | None, make: Any) -> nn.Module:
    """``make()``, after ``torch.manual_seed(seed)`` if a seed is given. The CPU RNG is forked
    around it, so a seed makes the weights deterministic without touching the global RNG."""
    if seed is None:
        return make()
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return make()


def build_timm(arch: str, *, num_classes: int = 1000, seed: int | None = None) -> nn.Module:
    """``timm.create_model(arch, pretrained=False, num_classes=...)``, randomly initialised."""
    _check_num_classes(num_classes)
    import timm  # lazily: importing timm costs seconds

    return _seeded(seed, lambda: timm.create_model(arch, pretrained=False, num_classes=num_classes))


def build_torchvision(arch: str, *, num_classes: int = 1000, seed: int | None = None) -> nn.Module:
    """``torchvision.models.<arch>(weights=None, num_classes=...)``, randomly initialised;
    num_classes 0 replaces the classifier by ``nn.Identity`` (timm's convention)."""
    _check_num_classes(num_classes)
    import torchvision.models  # lazily

    def make() -> nn.Module:
        model = getattr(torchvision.models, arch)(weights=None, num_classes=max(num_classes, 1))
        if num_classes == 0:
            model.fc = nn.Identity()  # torchvision's ShuffleNetV2 head
        return model

    return _seeded(seed, make)


_BUILDERS = {"timm": build_timm, "torchvision": build_torchvision}
_LIBRARY_CALLS = {"timm": "timm.create_model({!r}, pretrained=False)",
                  "torchvision": "torchvision.models.{}(weights=None)"}


def build_own(baseline: OwnBaseline, *, num_classes: int = 1000, seed: int | None = None) -> nn.Module:
    """``baseline``'s model from its ``flopsbench_zoo`` module, randomly initialised the official way."""
    _check_num_classes(num_classes)
    builder = getattr(importlib.import_module(baseline.module), baseline.builder)  # lazily: torchvision
    return builder(baseline.variant, num_classes=num_classes, seed=seed)


# ----------------------------------------------------------------------------- registry

for _b in BASELINES:
    register_model(ModelDef(
        name=_b.name,
        description=f"{_b.paper_label} from {_b.library}: "
                    f"{_LIBRARY_CALLS[_b.library].format(_b.name)}, random init",
        build=partial(_BUILDERS[_b.library], _b.name),
        defaults=dict(DEFAULTS),
        input_resolution=_b.input_resolution,
        paper_label=_b.paper_label,
        unavailable=missing_extra(LIBRARY_NEEDS[_b.library]),
    ))

for _own in OWN_BASELINES:
    register_model(ModelDef(
        name=_own.name,
        description=f"{_own.paper_label}: {_own.source} ({_own.module}), random init",
        build=partial(build_own, _own),
        defaults=dict(DEFAULTS),
        input_resolution=224,  # the official repositories' default (both build for 224)
        paper_label=_own.paper_label,
        unavailable=missing_extra(_own.needs),
    ))
del _b, _own


# ----------------------------------------------------------------------------- name lookup

def resolve_model(name: str) -> ModelDef:
    """The model called ``name``.

    A registered name (``fasternet_t0``, ``resnet50``, ``pvt_tiny`` …) returns its entry.
    ``timm:NAME`` returns an unregistered entry building ``timm.create_model(NAME,
    pretrained=False, num_classes=...)`` (NAME may carry a pretrained tag, ``resnet50.a1_in1k``,
    which picks the input resolution), with the input resolution of timm's pretrained config
    (224 if timm has none); without timm it raises KeyError saying how to install it. Anything
    else raises KeyError suggesting close names."""
    if name in list_models():
        return get_model(name)
    if name.startswith(TIMM_PREFIX):
        reason = missing_extra(LIBRARY_NEEDS["timm"])
        if reason:
            raise KeyError(f"{name} {reason}")
        return _timm_model(name[len(TIMM_PREFIX):])
    by_label = {get_model(n).paper_label.lower(): n for n in list_models() if get_model(n).paper_label}
    close = [by_label[name.lower()]] if name.lower() in by_label else []  # a Table 3 label
    lowered = {n.lower(): n for n in list_models()}
    close += [lowered[c] for c in difflib.get_close_matches(name.lower(), lowered, n=3, cutoff=0.6)
              if lowered[c] not in close]
    hint = f"did you mean {', '.join(map(repr, close))}? " if close else ""
    raise KeyError(f"unknown model {name!r}; {hint}Registered: {', '.join(list_models())}. "
                   f"For any timm model, use 'timm:NAME' (e.g. 'timm:{name}').")


def _timm_model(arch: str) -> ModelDef:
    import timm

    if not arch or not timm.is_model(arch):
        base = arch.split(".", 1)[0]
        close = difflib.get_close_matches(base, timm.list_models(), n=5, cutoff=0.6)
        hint = (f"did you mean {', '.join(repr(TIMM_PREFIX + c) for c in close)}?" if close
                else "see timm.list_models()")
        raise KeyError(f"timm has no model {arch!r}; {hint}")
    try:
        resolution = timm_input_resolution(arch)
    except RuntimeError:  # a known architecture with a tag it does not have
        base = arch.split(".", 1)[0]
        tags = ", ".join(repr(TIMM_PREFIX + t) for t in timm.list_pretrained(f"{base}.*")) or "none"
        raise KeyError(f"timm's {base} has no pretrained tag {arch!r}; its tags: {tags}") from None
    return ModelDef(
        name=TIMM_PREFIX + arch,
        description=f"timm: timm.create_model({arch!r}, pretrained=False), random init",
        build=partial(build_timm, arch),
        defaults=dict(DEFAULTS),
        input_resolution=resolution,
        paper_label=None,
    )


def timm_input_resolution(arch: str) -> int:
    """The input side of timm's pretrained config for ``arch`` (its default tag unless ``arch``
    names one), without building the model or downloading anything; 224 if timm has none.
    An unknown tag of a known architecture raises RuntimeError (timm's)."""
    from timm.models import get_pretrained_cfg

    cfg = get_pretrained_cfg(arch)
    if cfg is None or not cfg.input_size:
        return 224
    return int(cfg.input_size[-1])
