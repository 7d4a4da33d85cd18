"""The optimiser state that belongs to rows of a parameter: what must move when rows are copied
or reordered (sprite reassignment, the dead-layer restart, the learned selection's head)."""

import torch


def row_moments(optimizer: torch.optim.Optimizer | None, tensor: torch.Tensor):
    """(name, state) of the optimiser's per-element states of `tensor` (Adam's moments): what must
    move with its rows when rows are copied or permuted. Scalar states (the step) are left out."""
    state = optimizer.state.get(tensor) if optimizer is not None else None
    return [
        (name, value) for name, value in (state or {}).items() if torch.is_tensor(value) and value.shape == tensor.shape
    ]
