"""Count what a piece of code asks of the device, on any device.

On a GPU every compute operator is at least one kernel launch, and an operator whose output
depends on tensor values (`.item()`, `bool(t)`, `nonzero`, boolean-mask indexing) makes the
host wait for the device. Counting both below autograd, with a dispatch mode, measures the
launch overhead and the synchronisations of a training step on a CPU-only machine too.
"""

from collections import Counter

import torch
from torch.utils._python_dispatch import TorchDispatchMode

_SYNC_TAGS = (torch.Tag.data_dependent_output, torch.Tag.dynamic_output_shape)
_INDEX_OPS = {torch.ops.aten.index.Tensor, torch.ops.aten.index_put.default, torch.ops.aten.index_put_.default,
              torch.ops.aten._index_put_impl_.default}


_COPY_OPS = {torch.ops.aten._to_copy.default, torch.ops.aten.copy_.default}


def _is_device_tensor(t) -> bool:
    return isinstance(t, torch.Tensor) and t.device.type not in ("cpu", "meta")


def _waits_for_device(func, args, kwargs) -> bool:
    """True when the operator's result shape or value must be read back by the host."""
    if func in _COPY_OPS:  # a copy from the device into host memory
        if func == torch.ops.aten.copy_.default:
            return not _is_device_tensor(args[0]) and _is_device_tensor(args[1])
        target = kwargs.get("device")
        return _is_device_tensor(args[0]) and target is not None and torch.device(target).type == "cpu"
    if func in _INDEX_OPS:  # integer indices are asynchronous; boolean masks are not
        indices = args[1] if len(args) > 1 else ()
        return any(t is not None and t.dtype == torch.bool for t in indices)
    return any(tag in func.tags for tag in _SYNC_TAGS)


class OpCensus(TorchDispatchMode):
    """Within `with OpCensus() as census:`, count compute operators and host waits.

    Views and other metadata-only operators launch nothing and are left out.
    """

    def __init__(self):
        super().__init__()
        self.ops: Counter = Counter()
        self.syncs: Counter = Counter()

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        if not func.is_view:
            self.ops[str(func.overloadpacket.__name__)] += 1
            if _waits_for_device(func, args, kwargs or {}):
                self.syncs[str(func.overloadpacket.__name__)] += 1
        return func(*args, **(kwargs or {}))

    @property
    def n_ops(self) -> int:
        return sum(self.ops.values())

    @property
    def n_syncs(self) -> int:
        return sum(self.syncs.values())
