"""A TorchDispatchMode without torch's dynamo guard.

torch wraps every mode's ``__torch_dispatch__`` in ``torch._disable_dynamo`` unless the class
says ``_should_skip_dynamo() -> False``, and that wrapper imports torch._dynamo (and sympy) on
its first call: 1.7-2 s on the development VM, a third of ``flopsbench model fasternet_t0``'s
counting. Nothing is compiled under our modes, so the guard guards nothing."""

from __future__ import annotations

from torch.utils._python_dispatch import TorchDispatchMode


class PlainDispatchMode(TorchDispatchMode):
    @classmethod
    def _should_skip_dynamo(cls) -> bool:
        return False
