"""What flopsbench measures: operator and model definitions found through registries.

Importing this package registers every operator family and model. The names below are the API a
plugin registers its own with (``register_operator(OperatorDef(...))``,
``register_model(ModelDef(...))``; see flopsbench.plugins and examples/custom_operator.py)."""

from flopsbench_zoo._registry import (InvalidParameter, OperatorDef, get_operator, list_operators,
                                      register_operator)
from flopsbench_zoo.models import ModelDef, get_model, list_models, register_model
from flopsbench_zoo import conv, pconv  # noqa: F401  (registers the operator families, Table 1 order)
from flopsbench_zoo import fasternet  # noqa: F401  (registers fasternet_t0 … fasternet_l)
from flopsbench_zoo import baselines  # noqa: F401  (registers the paper's baselines)

__all__ = ["InvalidParameter", "OperatorDef", "get_operator", "list_operators", "register_operator",
           "ModelDef", "get_model", "list_models", "register_model"]
