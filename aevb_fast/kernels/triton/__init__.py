"""The Triton kernels: the GPU path, and CPU tensors under Triton's interpreter (TRITON_INTERPRET=1,
set before this package is first imported).

One module per op, each holding its kernels and launchers that take contiguous tensors and return
the op's outputs (reparameterize: z = mu + exp(logvar / 2) * eps with the KL term; one per
likelihood, named as it: its per-row log-likelihood), each with its backward. Every module of the
package not named with a leading underscore is imported here, as an attribute of it.

load_error is None when the kernels loaded; interpreted says whether they run under the interpreter.
"""

import importlib
import pkgutil

KERNELS = sorted(m.name for m in pkgutil.iter_modules(__path__) if not m.name.startswith("_"))

try:
    from triton.runtime.interpreter import InterpretedFunction

    for _name in KERNELS:
        globals()[_name] = importlib.import_module(f".{_name}", __name__)
    load_error = None
    interpreted = isinstance(globals()["reparameterize"].reparameterize_forward_kernel, InterpretedFunction)
except ImportError as error:  # triton is an optional dependency
    load_error = f"{type(error).__name__}: {error}"
    interpreted = False

__all__ = ["KERNELS", "interpreted", "load_error", *KERNELS]
