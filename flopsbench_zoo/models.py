"""Registry of whole models: each entry is data plus a tiny builder (timm style).

A model here is a complete network measured as one workload (the paper's Table 3 rows), as
opposed to an operator (one layer type stacked ``layers`` times, see ``_registry.py``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Mapping

from torch import nn

from flopsbench_zoo._registry import InvalidParameter, Registry


@dataclass(frozen=True)
class ModelDef:
    """One registered model.

    ``build(**params)`` returns the model (random init, train mode as built; call ``.eval()``
    before counting or timing). ``defaults`` lists every option ``build`` accepts with its
    default value. ``input_resolution`` is the square input side the paper reports the model at
    (FasterNet: 224). ``paper_label`` is the model's row name in the paper's Table 3
    (``models[].name`` in fasternet_published.json), or None if the paper has no such row.
    """

    name: str
    description: str
    build: Callable[..., nn.Module]
    defaults: Mapping[str, Any]
    input_resolution: int = 224
    paper_label: str | None = None
    unavailable: str | None = None  # why it cannot be built here (e.g. no library has it)

    def resolve(self, overrides: Mapping[str, Any]) -> dict[str, Any]:
        """This model's options: its defaults, replaced by any override it accepts."""
        return {key: overrides.get(key, value) for key, value in self.defaults.items()}

    def create(self, **params: Any) -> nn.Module:
        """Build with the defaults, overridden by ``params``; an unknown option raises."""
        if self.unavailable:
            raise RuntimeError(f"{self.name} is unavailable: {self.unavailable}")
        unknown = sorted(set(params) - set(self.defaults))
        if unknown:
            raise InvalidParameter(unknown[0], f"model {self.name!r} has no option {unknown[0]!r}; "
                                   f"options: {', '.join(self.defaults) or 'none'}")
        return self.build(**self.resolve(params))


_MODELS: Registry[ModelDef] = Registry("model")
register_model = _MODELS.register
get_model = _MODELS.get
list_models = _MODELS.names  # registration order: the paper's Table 3 order within a family
