"""The paper's Table 3 baselines (timm / torchvision, and PVT v1 / CycleMLP defined in flopsbench_zoo)
in the model registry, and resolve_model."""

from __future__ import annotations

import json
import subprocess
import sys
import warnings
from pathlib import Path

import pytest
import torch
from torch import nn

from flopsbench_zoo import get_model, list_models, models
from flopsbench_zoo._registry import InvalidParameter
from flopsbench_zoo.baselines import (BASELINES, DEFAULTS, OWN_BASELINES, missing_extra, resolve_model,
                                      timm_input_resolution)
from flopsbench_zoo.models import ModelDef

ROOT = Path(__file__).resolve().parents[1]
TABLE3 = {row["name"]: row for row in
          json.loads((ROOT / "flopsbench/data/fasternet_published.json").read_text())["models"]}
AVAILABLE = [b.name for b in BASELINES]
OWN_NAMES = [b.name for b in OWN_BASELINES]  # tested in test_pvt_cyclemlp.py
UNAVAILABLE_EXAMPLE = "nolib_net"

# Swin's patch embedding only takes the side it was built for (224, window 7); every other
# baseline is fully convolutional or interpolates, so a 64×64 input keeps the forward test cheap.
FORWARD_SIDE = {b.name: 224 if b.name.startswith("swin_") else 64 for b in BASELINES}

# The libraries' default input sides (timm: pretrained_cfg['input_size'] of the default tag).
EXPECTED_RESOLUTION = {name: 224 for name in AVAILABLE} | {
    "mobilevit_xxs": 256, "mobilevit_xs": 256, "mobilevit_s": 256,
    "edgenext_xx_small": 256, "edgenext_x_small": 256, "edgenext_small": 256,
}

# Rows whose parameter count (all parameters, BN included) does not round to the paper's
# params_M at its printed precision. None at present: every available baseline matches.
PARAMS_MISMATCH: dict[str, float] = {}


def printed(value: float, like: float) -> float:
    """``value`` rounded to as many decimals as the paper printed ``like`` with."""
    text = repr(float(like))
    decimals = len(text.split(".")[1].rstrip("0")) if "." in text else 0
    return round(value, decimals)


def fvcore_gflops(model: nn.Module, side: int) -> float:
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")
        from fvcore.nn import FlopCountAnalysis
        analysis = FlopCountAnalysis(model.eval(), torch.zeros(1, 3, side, side))
        analysis.unsupported_ops_warnings(False)
        analysis.uncalled_modules_warnings(False)
        return analysis.total() / 1e9


# ----------------------------------------------------------------------------- registry

def test_registered_after_fasternet_in_table_order_within_family():
    names = list_models()
    assert names[names.index("fasternet_l") + 1:] == AVAILABLE + OWN_NAMES
    assert AVAILABLE[:4] == ["shufflenet_v2_x1_5", "shufflenet_v2_x2_0", "mobilenetv2_100", "mobilenetv2_140"]


def test_every_paper_label_is_a_table3_row_and_every_row_is_registered():
    labels = {get_model(n).paper_label: n for n in list_models() if get_model(n).paper_label}
    assert len(labels) == len([n for n in list_models() if get_model(n).paper_label])  # no duplicates
    missing = sorted(set(labels) - set(TABLE3))
    assert not missing, f"paper_label not in Table 3: {missing}"
    assert set(labels) == set(TABLE3), f"Table 3 rows not registered: {sorted(set(TABLE3) - set(labels))}"


@pytest.mark.baselines
def test_entries_name_library_and_options():
    for b in BASELINES:
        model = get_model(b.name)
        assert model.unavailable is None
        assert b.library in model.description and b.name in model.description
        assert dict(model.defaults) == {"num_classes": 1000, "seed": None}
    assert not [n for n in list_models() if get_model(n).unavailable]


def with_unavailable_model(monkeypatch) -> str:
    """Register, for one test, a model that cannot be built here (``ModelDef.unavailable``): since
    PVT v1 and CycleMLP are defined in ``flopsbench_zoo``, no registered model is; the path stays."""
    entry = ModelDef(name=UNAVAILABLE_EXAMPLE, description="NoLibNet (not buildable here)",
                     build=lambda **params: nn.Identity(), defaults=dict(DEFAULTS),
                     unavailable="NoLibNet is in neither timm nor torchvision")
    monkeypatch.setitem(models._MODELS._entries, entry.name, entry)
    return entry.name


def test_an_unavailable_entry_raises_with_its_reason(monkeypatch):
    model = get_model(with_unavailable_model(monkeypatch))
    with pytest.raises(RuntimeError, match="unavailable") as info:
        model.create()
    assert model.unavailable in str(info.value)


def test_pvt_v1_and_cyclemlp_are_defined_here_from_the_official_code():
    assert [(b.name, b.paper_label) for b in OWN_BASELINES] == [
        ("pvt_tiny", "PVT-Tiny"), ("pvt_small", "PVT-Small"), ("pvt_medium", "PVT-Medium"),
        ("pvt_large", "PVT-Large"), ("cyclemlp_b1", "CycleMLP-B1"), ("cyclemlp_b2", "CycleMLP-B2")]
    for b in OWN_BASELINES:
        model = get_model(b.name)
        assert model.unavailable == missing_extra(b.needs)  # CycleMLP needs torchvision; PVT nothing
        assert b.module in model.description and "official" in model.description
    with pytest.raises(InvalidParameter):
        get_model("pvt_tiny").create(num_classes=-1)


@pytest.mark.baselines
def test_no_library_has_pvt_v1_or_cyclemlp():
    import timm
    import torchvision.models

    assert timm.list_models("cyclemlp*") == [] and timm.list_models("pvt_[!v]*") == []
    tv = torchvision.models.list_models()
    assert not [n for n in tv if "pvt" in n or "cyclemlp" in n]


@pytest.mark.baselines
def test_input_resolutions_are_the_libraries_defaults():
    import torchvision.models

    assert {n: get_model(n).input_resolution for n in AVAILABLE} == EXPECTED_RESOLUTION
    for b in BASELINES:
        if b.library == "timm":
            assert timm_input_resolution(b.name) == b.input_resolution, b.name
        else:  # torchvision: the centre crop of its ImageNet weights' transforms
            weights = torchvision.models.get_model_weights(b.name).DEFAULT
            assert weights.transforms().crop_size == [b.input_resolution], b.name


def test_import_does_not_load_timm_or_torchvision():
    code = "import sys, flopsbench_zoo; print('timm' in sys.modules, 'torchvision' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True,
                         check=True).stdout.split()
    assert out == ["False", "False"]


# The core install (no baselines extra), in a fresh interpreter: importing timm or torchvision fails.
WITHOUT_EXTRA = """
import json, sys
sys.modules["timm"] = sys.modules["torchvision"] = None
from flopsbench_zoo import get_model
from flopsbench_zoo.baselines import resolve_model
out = {name: get_model(name).unavailable for name in ("resnet50", "shufflenet_v2_x1_5", "cyclemlp_b1",
                                                     "pvt_tiny", "fasternet_t0")}
attempts = {"create": lambda: get_model("resnet50").create(), "timm": lambda: resolve_model("timm:resnet18"),
            "cyclemlp": lambda: __import__("flopsbench_zoo.cyclemlp")}
for key, attempt in attempts.items():
    try:
        attempt()
    except Exception as exc:
        out[key] = f"{type(exc).__name__}: {exc}"
print(json.dumps(out))
"""


def test_without_the_extra_baselines_are_unavailable_saying_how_to_install_it():
    out = json.loads(subprocess.run([sys.executable, "-c", WITHOUT_EXTRA], cwd=ROOT, capture_output=True,
                                    text=True, check=True).stdout)
    extra = "needs the baselines extra ({} not installed): pip install 'flopsbench[baselines]'"
    assert out["resnet50"] == extra.format("timm and torchvision")  # timm imports torchvision
    assert out["shufflenet_v2_x1_5"] == out["cyclemlp_b1"] == extra.format("torchvision")
    assert out["pvt_tiny"] is None and out["fasternet_t0"] is None  # plain torch
    assert out["create"] == f"RuntimeError: resnet50 is unavailable: {out['resnet50']}"
    assert out["timm"] == "KeyError: \"timm:resnet18 " + out["resnet50"] + "\""
    assert out["cyclemlp"].startswith("ModuleNotFoundError: CycleMLP's Cycle FC is torchvision's deform_conv2d")
    assert out["cyclemlp"].endswith("pip install 'flopsbench[baselines]'")


# ----------------------------------------------------------------------------- building

@pytest.mark.baselines
@pytest.mark.parametrize("name", AVAILABLE)
def test_builds_runs_and_matches_paper_params(name):
    model = get_model(name).create(seed=0).eval()
    side = FORWARD_SIDE[name]
    with torch.no_grad():
        out = model(torch.randn(1, 3, side, side, generator=torch.Generator().manual_seed(0)))
    assert out.shape == (1, 1000) and torch.isfinite(out).all()
    params_m = sum(p.numel() for p in model.parameters()) / 1e6
    paper = TABLE3[get_model(name).paper_label]["params_M"]
    if name in PARAMS_MISMATCH:
        assert printed(params_m, paper) != paper
    else:
        assert printed(params_m, paper) == paper, f"{name}: {params_m:.3f} M vs paper {paper}"


@pytest.mark.baselines
@pytest.mark.parametrize("name", ["mobilenetv2_100", "shufflenet_v2_x1_5"])  # one per library
def test_num_classes_and_seed(name):
    model = get_model(name)
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        assert model.create(num_classes=10).eval()(x).shape == (2, 10)
        features = model.create(num_classes=0).eval()(x)
    assert features.ndim == 2 and features.shape[1] > 10  # no head: pooled features

    rng_before = torch.get_rng_state()
    a, b, c = (model.create(seed=s).state_dict() for s in (1, 1, 2))
    assert torch.equal(torch.get_rng_state(), rng_before)  # the global RNG is left alone
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert not all(torch.equal(a[k], c[k]) for k in a)

    with pytest.raises(InvalidParameter):
        model.create(pretrained=True)
    with pytest.raises(InvalidParameter):
        model.create(num_classes=-1)


@pytest.mark.baselines
@pytest.mark.parametrize("name", ["shufflenet_v2_x1_5", "mobilenetv2_100", "edgenext_xx_small", "ghostnet_130"])
def test_fvcore_flops_at_library_resolution_match_paper(name):
    entry = get_model(name)
    paper = TABLE3[entry.paper_label]["flops_G"]
    gflops = fvcore_gflops(entry.create(), entry.input_resolution)
    assert printed(gflops, paper) == paper, f"{name}: {gflops:.3f} G vs paper {paper}"


@pytest.mark.baselines
def test_mobilevit_flops_match_paper_with_attention_counted():
    """timm runs MobileViT's attention through F.scaled_dot_product_attention, which fvcore does
    not count: raw fvcore gives 0.340 G at 256 vs the paper's 0.42. flopsbench's counter traces
    timm's explicit attention path instead (``fused_attn`` off while counting) and gets the
    paper's number, leaving the model as it was."""
    from flopsbench.counting import count_flops

    entry = get_model("mobilevit_xxs")
    paper = TABLE3[entry.paper_label]["flops_G"]
    model = entry.create(seed=0).eval()
    assert printed(fvcore_gflops(model, 256), paper) == 0.34
    total = count_flops(model, torch.rand(1, 3, 256, 256)).total
    assert printed(total / 1e9, paper) == paper
    assert all(m.fused_attn for m in model.modules() if hasattr(m, "fused_attn"))  # restored


# ----------------------------------------------------------------------------- resolve_model

def test_resolve_registered_names():
    assert resolve_model("resnet50") is get_model("resnet50")
    assert resolve_model("fasternet_t0") is get_model("fasternet_t0")
    assert resolve_model("pvt_tiny") is get_model("pvt_tiny") and not get_model("pvt_tiny").unavailable


@pytest.mark.baselines
def test_resolve_timm_name():
    entry = resolve_model("timm:resnet18")
    assert entry.name == "timm:resnet18" and entry.paper_label is None
    assert entry.input_resolution == 224 and "timm" in entry.description
    assert "timm:resnet18" not in list_models()  # not registered
    model = entry.create(num_classes=7, seed=0).eval()
    with torch.no_grad():
        assert model(torch.randn(1, 3, 64, 64)).shape == (1, 7)
    assert sum(p.numel() for p in model.parameters()) == 11_180_103
    assert resolve_model("timm:vit_base_patch16_384").input_resolution == 384
    assert resolve_model("timm:resnet50.fb_ssl_yfcc100m_ft_in1k").input_resolution == 224


@pytest.mark.baselines
def test_resolve_unknown_timm_name_suggests():
    with pytest.raises(KeyError, match="timm has no model 'resnet999'.*did you mean.*'timm:resnet"):
        resolve_model("timm:resnet999")
    with pytest.raises(KeyError, match="no pretrained tag.*'timm:resnet50.a1_in1k'"):
        resolve_model("timm:resnet50.nope")


def test_resolve_unknown_name_suggests_close_names_and_timm():
    with pytest.raises(KeyError, match="did you mean 'fasternet_t2'.*'timm:fasternet_t9'"):
        resolve_model("fasternet_t9")
    with pytest.raises(KeyError, match="did you mean 'swin_tiny_patch4_window7_224'"):
        resolve_model("Swin-T")  # a Table 3 label points at its registered name
