"""The aevb_fast operator library: one definition per fused op, routed by its backend argument.

Ops are defined with torch.library.Library (define + impl), which costs several times less per
call than torch.library.custom_op, with torch.library.register_fake / register_autograd rules.
Each comes back as a FusedOp: called under torch.compile, export, a dispatch mode (fake tensors,
make_fx) or with tensor subclasses, it is the registered op; called eagerly on plain tensors, it
runs the same launchers and the same autograd rules through a torch.autograd.Function, without the
dispatcher's boxed round trip into Python (on the 2-core CI machine that round trip and
register_autograd's wrapper cost about 110 us a call, more than a paper-sized kernel).
"""

from collections.abc import Callable

import torch
from torch.utils._python_dispatch import is_in_torch_dispatch_mode

from .backends import unavailable_reason, usable

lib = torch.library.Library("aevb_fast", "DEF")


def row_dtype(dtype: torch.dtype) -> torch.dtype:
    """Dtype of per-row outputs (KL, log-likelihoods): float64 for float64 values, else float32."""
    return torch.float64 if dtype == torch.float64 else torch.float32


def require(condition: bool, message: Callable[[], str]) -> None:
    """Argument checks of the ops themselves: a kernel handed mismatched buffers would read out of
    bounds, so direct callers of torch.ops.aevb_fast get a ValueError instead. The message is built
    only on failure: formatting it on every call cost microseconds."""
    if not condition:
        raise ValueError(message())


def require_one_device(op: str, **tensors: torch.Tensor | None) -> None:
    """All given tensors (None skipped) on one device: a kernel launched for one device and handed
    another's pointer would read the wrong memory or fault."""
    devices = [t.device for t in tensors.values() if t is not None]
    if any(d != devices[0] for d in devices):
        raise ValueError(
            f"aevb_fast::{op}: expected tensors on one device, got "
            + ", ".join(f"{name} on {t.device}" for name, t in tensors.items() if t is not None)
        )


def triton_kernels():
    """aevb_fast.kernels.triton, imported on first use: importing triton takes half a second and
    reads TRITON_INTERPRET, which a user may set after importing aevb_fast."""
    from ..kernels import triton

    return triton


def _route(name: str, launchers: dict[str, Callable], check: Callable | None) -> Callable:
    """The op's implementation: checks the arguments, then calls launchers[backend] (without the
    backend argument) if that backend can serve the tensors' device."""

    def route(*args):
        *inputs, backend = args
        if check is not None:
            check(*inputs)
        device = next(a.device for a in inputs if isinstance(a, torch.Tensor))
        launcher = launchers.get(backend)
        if launcher is None or backend not in usable(device.type):
            reason = (
                unavailable_reason(backend, device.type)
                if launcher is not None
                else (f"no {backend!r} kernel; kernels: {', '.join(sorted(launchers))}")
            )
            raise RuntimeError(
                f"aevb_fast::{name} cannot run with backend={backend!r} on {device.type} tensors: {reason}"
            )
        return launcher(*inputs)

    return route


_PLAIN = (torch.Tensor, torch.nn.Parameter)


def traced(args) -> bool:
    """Whether a call must reach the dispatcher: something is tracing or intercepting ops, or an
    input is a tensor subclass."""
    if torch.compiler.is_compiling() or is_in_torch_dispatch_mode():
        return True
    for a in args:
        if isinstance(a, torch.Tensor) and type(a) not in _PLAIN:
            return True
    return False


class FusedOp:
    """A registered op (self.op, e.g. torch.ops.aevb_fast.bernoulli_log_prob.default) and its eager path.

    Called as op(*args) its arguments are checked as the dispatcher's route checks them;
    op.prechecked(*args) is for callers that have checked them already and resolved the backend
    for their device (the functional layer, and the autograd rules, whose saved inputs passed the
    forward's checks): on one-element inputs the checks cost about as much as the kernel call."""

    def __init__(
        self,
        op: torch._ops.OpOverload,
        route: Callable,
        launchers: dict[str, Callable],
        check: Callable | None,
        setup_context: Callable | None,
        backward: Callable | None,
    ):
        self.op, self._route, self._launchers, self._check = op, route, launchers, check

        # The ctx-taking form of forward: with a separate setup_context, Function.apply binds its
        # arguments through inspect.signature on every call (about 50 us here).
        def forward(ctx, *args):
            output = launchers[args[-1]](*args[:-1])
            setup_context(ctx, args, output)
            return output

        self._function = (
            None
            if backward is None
            else type(
                op.name(),
                (torch.autograd.Function,),
                {"forward": staticmethod(forward), "backward": staticmethod(backward)},
            )
        )

    def __call__(self, *args):
        if traced(args):
            return self.op(*args)
        if needs_grad(args):
            # An op without a derivative goes to the dispatcher, which says so as for any op.
            if self._function is None:
                return self.op(*args)
            self._route_check(args)
            return self._function.apply(*args)
        return self._route(*args)

    def prechecked(self, *args):
        if traced(args):
            return self.op(*args)
        if needs_grad(args):
            return self.op(*args) if self._function is None else self._function.apply(*args)
        return self.launch(*args)

    def launch(self, *args):
        """The kernel alone, for arguments checked by the caller: no autograd, no dispatcher."""
        return self._launchers[args[-1]](*args[:-1])

    def _route_check(self, args) -> None:
        """What route checks before it launches: the arguments, and that the backend can serve."""
        *inputs, backend = args
        if self._check is not None:
            self._check(*inputs)
        device = next(a.device for a in inputs if isinstance(a, torch.Tensor))
        if backend not in self._launchers or backend not in usable(device.type):
            self._route(*args)  # raises, saying why


def needs_grad(args) -> bool:
    if not torch.is_grad_enabled():
        return False
    for a in args:
        if isinstance(a, torch.Tensor) and a.requires_grad:
            return True
    return False


def define(
    name: str,
    schema: str,
    launchers: dict[str, Callable],
    fake: Callable,
    setup_context: Callable | None = None,
    backward: Callable | None = None,
    check: Callable | None = None,
) -> FusedOp:
    """Defines aevb_fast::<name><schema>, whose last argument is the backend, routes calls on CPU and
    CUDA tensors to launchers[backend] after check(*inputs) (None: the launchers check for
    themselves), and registers its fake implementation and (with backward) its autograd rule."""
    lib.define(name + schema)
    route = _route(name, launchers, check)
    for dispatch_key in ("CPU", "CUDA"):
        lib.impl(name, route, dispatch_key)
    qualified = f"aevb_fast::{name}"
    torch.library.register_fake(qualified, fake)
    if backward is not None:
        torch.library.register_autograd(qualified, backward, setup_context=setup_context)
    return FusedOp(getattr(torch.ops.aevb_fast, name).default, route, launchers, check, setup_context, backward)
