"""Optimizers for training under the paper's weight prior.

    optimizer = aevb_fast.optim.Adagrad(model.parameters(), lr=0.02, weight_decay=1 / N)

Adagrad is torch.optim.Adagrad (the same arguments, update, state and checkpoints, either way
round) with two differences in how the step runs:
- On the CPU, float32 and float64 parameters step in one fused native pass each with denormals
  flushed to zero. A weight decay (the N(0, I) prior's gradient W / N) pulls the parameters the data
  never move geometrically towards zero, through float32's denormal range, where every operation
  on them is many times slower (csrc/cpu/adagrad.cpp): flushed, they become exact zeros. Every
  other value is the update's as torch computes it, to rounding.
- Elsewhere (CUDA; CPU without the extension or with other dtypes), torch's foreach ops without
  the host sync that torch's Adagrad makes for its step count each step, with the step count kept
  on the parameters' device: the step can be captured in a CUDA graph.
Groups with lr_decay, maximize or sparse gradients step as torch's Adagrad does.
"""

import torch
from torch.optim.adagrad import adagrad as _torch_adagrad

from .ops._native import dtype_code, native


def _native_ok(param: torch.Tensor, grad: torch.Tensor, total: torch.Tensor) -> bool:
    return (
        native is not None
        and param.device.type == "cpu"
        and param.dtype in (torch.float32, torch.float64)
        and grad.dtype == param.dtype
        and param.is_contiguous()
        and grad.is_contiguous()
        and total.is_contiguous()
    )


class Adagrad(torch.optim.Adagrad):
    """torch.optim.Adagrad(params, lr, lr_decay, weight_decay, initial_accumulator_value, eps), whose
    step is fused and flushes denormals on the CPU, and runs without host syncs elsewhere."""

    def __init__(
        self,
        params,
        lr: float = 1e-2,
        lr_decay: float = 0,
        weight_decay: float = 0,
        initial_accumulator_value: float = 0,
        eps: float = 1e-10,
    ):
        super().__init__(
            params,
            lr=lr,
            lr_decay=lr_decay,
            weight_decay=weight_decay,
            initial_accumulator_value=initial_accumulator_value,
            eps=eps,
        )
        self._steps_to_devices()

    def load_state_dict(self, state_dict: dict) -> None:
        super().load_state_dict(state_dict)
        self._steps_to_devices()

    def _steps_to_devices(self) -> None:
        # torch's Adagrad keeps its step counts on the CPU; incremented there, a CUDA graph would
        # replay without them.
        for parameter, state in self.state.items():
            if "step" in state and state["step"].device != parameter.device:
                state["step"] = state["step"].to(parameter.device)

    @torch.no_grad()
    def step(self, closure=None):
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            params = [p for p in group["params"] if p.grad is not None]
            if not params:
                continue
            grads = [p.grad for p in params]
            totals = [self.state[p]["sum"] for p in params]
            steps = [self.state[p]["step"] for p in params]
            if (
                group["lr_decay"]
                or group["maximize"]
                or group["differentiable"]
                or any(g.is_sparse or p.is_complex() for p, g in zip(params, grads))
            ):
                _torch_adagrad(
                    params,
                    grads,
                    totals,
                    steps,
                    lr=group["lr"],
                    weight_decay=group["weight_decay"],
                    lr_decay=group["lr_decay"],
                    eps=group["eps"],
                    has_sparse_grad=any(g.is_sparse for g in grads),
                    maximize=group["maximize"],
                    differentiable=group["differentiable"],
                    has_complex=any(p.is_complex() for p in params),
                )
                continue
            torch._foreach_add_(steps, 1)
            lr, weight_decay, eps = group["lr"], group["weight_decay"], group["eps"]
            rest = []
            for p, g, s in zip(params, grads, totals):
                if _native_ok(p, g, s):
                    native.adagrad_step(
                        dtype_code(p.dtype),
                        p.data_ptr(),
                        g.data_ptr(),
                        s.data_ptr(),
                        p.numel(),
                        lr,
                        weight_decay,
                        eps,
                        torch.get_num_threads(),
                    )
                else:
                    rest.append((p, g, s))
            if rest:
                _foreach_step(*map(list, zip(*rest)), lr, weight_decay, eps)
        return loss


def _foreach_step(
    params: list[torch.Tensor],
    grads: list[torch.Tensor],
    totals: list[torch.Tensor],
    lr: float,
    weight_decay: float,
    eps: float,
) -> None:
    """The update of adagrad.cpp in torch's foreach ops, grouped by device and dtype."""
    grouped = torch.optim.Optimizer._group_tensors_by_device_and_dtype([params, grads, totals])
    for (device_params, device_grads, device_totals), _ in grouped.values():
        if weight_decay:
            device_grads = torch._foreach_add(device_grads, device_params, alpha=weight_decay)
        torch._foreach_addcmul_(device_totals, device_grads, device_grads, value=1)
        std = torch._foreach_sqrt(device_totals)
        torch._foreach_add_(std, eps)
        torch._foreach_addcdiv_(device_params, device_grads, std, value=-lr)
