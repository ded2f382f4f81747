"""Registry of operator micro-benchmarks: each entry is data plus a tiny builder (timm style).

An operator here is one layer type; the harness stacks ``layers`` copies of it, input channels =
output channels, stride 1, same padding. Every entry carries its analytic FLOP formula and the
paper's memory-access formula so that counting can be checked against ground truth.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Generic, Mapping, TypeVar

from torch import nn


T = TypeVar("T")


class InvalidParameter(ValueError):
    """A parameter value an operator cannot take; ``param`` names the parameter."""

    def __init__(self, param: str, message: str):
        super().__init__(message)
        self.param = param


@dataclass(frozen=True)
class OperatorDef:
    """One registered operator.

    ``build(channels, **params)`` returns one layer. ``macs(c, h, w, **params)`` is the
    multiply-adds of one layer on one image (1 multiply-add = 1 FLOP, the paper's and fvcore's
    convention). ``memory_elements(c, h, w, batch, **params)`` is the paper's memory-access
    formula for one layer, in elements, including the weight term. ``check(c, **params)`` raises
    InvalidParameter when the channel count and parameters do not fit together.
    """

    name: str
    description: str
    defaults: Mapping[str, Any]
    build: Callable[..., nn.Module]
    macs: Callable[..., int]
    memory_elements: Callable[..., int]
    check: Callable[..., None] = field(default=lambda c, **params: None)
    paper_label: str | None = None  # its row label in the paper's Table 1, at its defaults

    def resolve(self, overrides: Mapping[str, Any]) -> dict[str, Any]:
        """This operator's parameters: its defaults, replaced by any override it accepts."""
        return {key: overrides.get(key, value) for key, value in self.defaults.items()}

    def build_stack(self, channels: int, layers: int, **params: Any) -> nn.Sequential:
        self.check(channels, **params)
        return nn.Sequential(*(self.build(channels, **params) for _ in range(layers)))


class Registry(Generic[T]):
    """Named definitions in registration order; registering a name twice raises."""

    def __init__(self, kind: str):
        self.kind = kind
        self._entries: dict[str, T] = {}

    def register(self, entry: T) -> T:
        if entry.name in self._entries:
            raise ValueError(f"{self.kind} {entry.name!r} is already registered")
        self._entries[entry.name] = entry
        return entry

    def get(self, name: str) -> T:
        try:
            return self._entries[name]
        except KeyError:
            raise KeyError(f"unknown {self.kind} {name!r}; known: {', '.join(self._entries)}") from None

    def names(self) -> list[str]:
        return list(self._entries)


_OPERATORS: Registry[OperatorDef] = Registry("operator")
register_operator = _OPERATORS.register
get_operator = _OPERATORS.get
list_operators = _OPERATORS.names  # registration order: the paper's Table 1 order
