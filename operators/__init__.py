"""What flopsbench measures: operator definitions found through a registry.

Importing this package registers every operator family."""

from operators._registry import (InvalidParameter, OperatorDef, get_operator, list_operators,
                                 register_operator)
from operators import conv, pconv  # noqa: F401  (registers the families, Table 1 order)

__all__ = ["InvalidParameter", "OperatorDef", "get_operator", "list_operators", "register_operator"]
