"""aevb_fast.optim.Adagrad against torch.optim.Adagrad: the same update, state and checkpoints, with
denormals flushed to zero in the fused CPU step."""

import platform

import pytest
import torch

from aevb_fast.optim import Adagrad

TOLERANCES = {torch.float32: dict(rtol=1e-5, atol=1e-6), torch.float64: dict(rtol=1e-12, atol=1e-12)}


def _parameters(dtype, layout):
    torch.manual_seed(0)
    shapes = [(300, 70), (5000,), (3,)]
    if layout == "strided":  # not contiguous: torch's foreach ops instead of the fused native step
        return [
            torch.randn(*reversed(shape), dtype=dtype).T
            if len(shape) == 2
            else torch.randn(2 * shape[0], dtype=dtype)[::2]
            for shape in shapes
        ]
    return [torch.randn(*shape, dtype=dtype) for shape in shapes]


def _gradients(values, steps):
    generator = torch.Generator().manual_seed(1)
    return [[torch.randn(v.shape, dtype=v.dtype, generator=generator) for v in values] for _ in range(steps)]


def _reference(values, gradients, lr, weight_decay=0.0, lr_decay=0.0, initial_accumulator_value=0.0, eps=1e-10):
    """Adagrad's update in float64 from the same start and gradients: (parameters, sums)."""
    params = [v.to(torch.float64, copy=True) for v in values]
    sums = [torch.full_like(p, initial_accumulator_value) for p in params]
    for step, grads in enumerate(gradients, 1):
        for p, s, g in zip(params, sums, grads):
            g = g.double() + weight_decay * p
            s += g * g
            p -= lr / (1 + (step - 1) * lr_decay) * g / (s.sqrt() + eps)
    return params, sums


def _train(values, gradients, optimizer_class=Adagrad, **settings):
    """(parameters, optimizer) after one step per entry of gradients."""
    params = [v.clone(memory_format=torch.preserve_format).requires_grad_() for v in values]
    optimizer = optimizer_class(params, **settings)
    for grads in gradients:
        for p, g in zip(params, grads):
            p.grad = g.clone()
        optimizer.step()
    return params, optimizer


@pytest.mark.parametrize("layout", ["contiguous", "strided"])
@pytest.mark.parametrize("weight_decay", [0.0, 0.3])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_steps_as_adagrad(dtype, weight_decay, layout):
    values = _parameters(dtype, layout)
    assert all(v.is_contiguous() == (layout == "contiguous") for v in values)
    settings = dict(lr=0.1, weight_decay=weight_decay, initial_accumulator_value=0.1)
    gradients = _gradients(values, 5)
    params, optimizer = _train(values, gradients, **settings)
    expected, sums = _reference(values, gradients, **settings)
    for p, q, s in zip(params, expected, sums):
        torch.testing.assert_close(p.double(), q, **TOLERANCES[dtype])
        torch.testing.assert_close(optimizer.state[p]["sum"].double(), s, **TOLERANCES[dtype])
        assert optimizer.state[p]["step"].item() == 5


def test_groups_with_lr_decay_step_as_adagrad():
    values = _parameters(torch.float64, "contiguous")
    gradients = _gradients(values, 3)
    params, _ = _train(values, gradients, lr=0.1, lr_decay=0.5)
    for p, q in zip(params, _reference(values, gradients, lr=0.1, lr_decay=0.5)[0]):
        torch.testing.assert_close(p, q, **TOLERANCES[torch.float64])


def test_parameters_without_gradient_are_left_alone():
    a, b = torch.ones(4, requires_grad=True), torch.ones(4, requires_grad=True)
    optimizer = Adagrad([a, b], lr=0.1)
    a.grad = torch.ones(4)
    optimizer.step()
    assert torch.equal(b, torch.ones(4)) and optimizer.state[b]["step"].item() == 0
    assert torch.allclose(a, torch.full((4,), 0.9))


@pytest.mark.skipif(platform.machine() not in ("x86_64", "AMD64"), reason="the flush is x86's FTZ/DAZ")
def test_the_fused_step_flushes_denormals_to_zero():
    # A weight the data never move, decayed into float32's denormal range: torch's step keeps it
    # there (each operation on it slow), the fused one makes it an exact zero. Normal values step
    # as torch's do.
    values = torch.tensor([1e-39, -1e-40, 1e-30, 0.5])
    ours, theirs = values.clone().requires_grad_(), values.clone().requires_grad_()
    for p, optimizer in (
        (ours, Adagrad([ours], lr=0.1, weight_decay=0.5)),
        (theirs, torch.optim.Adagrad([theirs], lr=0.1, weight_decay=0.5)),
    ):
        optimizer.state[p]["sum"].fill_(1.0)
        p.grad = torch.zeros(4)
        optimizer.step()
    assert theirs[0] != 0 and theirs[1] != 0
    assert ours[0].item() == 0 and ours[1].item() == 0
    torch.testing.assert_close(ours[2:], theirs[2:], rtol=1e-6, atol=0)


def test_checkpoints_load_either_way():
    # torch's optimizer state continues in ours and ours in torch's: after two steps in one and a
    # third in the other, the three steps' update.
    values = _parameters(torch.float64, "contiguous")
    gradients = _gradients(values, 3)
    expected = _reference(values, gradients, lr=0.1)[0]
    for first, then in ((torch.optim.Adagrad, Adagrad), (Adagrad, torch.optim.Adagrad)):
        params, optimizer = _train(values, gradients[:2], first, lr=0.1)
        moved = then(params, lr=0.1)
        moved.load_state_dict(optimizer.state_dict())
        assert all(moved.state[p]["step"].device == p.device for p in params)
        for p, g in zip(params, gradients[2]):
            p.grad = g.clone()
        moved.step()
        for p, q in zip(params, expected):
            torch.testing.assert_close(p, q, **TOLERANCES[torch.float64])
