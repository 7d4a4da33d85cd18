"""Count what a piece of code asks of the device, on any device.

On a GPU every compute operator is at least one kernel launch, and an operator whose output
depends on tensor values (`.item()`, `bool(t)`, `nonzero`, boolean-mask indexing) makes the
host wait for the device, as does a copy to the host or a blocking copy to the device. Counting both below autograd, with a dispatch mode, measures the
launch overhead and the synchronisations of a training step on a CPU-only machine too.
"""

from collections import Counter

import torch
from torch.utils._python_dispatch import TorchDispatchMode

_SYNC_TAGS = (torch.Tag.data_dependent_output, torch.Tag.dynamic_output_shape)
_INDEX_OPS = {
    torch.ops.aten.index.Tensor,
    torch.ops.aten.index_put.default,
    torch.ops.aten.index_put_.default,
    torch.ops.aten._index_put_impl_.default,
}
_COPY_OPS = {torch.ops.aten._to_copy.default, torch.ops.aten.copy_.default}


def _copy_waits(func, args, kwargs) -> bool:
    """Device-to-host copies wait for the device; so do blocking host-to-device copies
    (torch synchronises the stream after them unless non_blocking)."""
    if func == torch.ops.aten.copy_.default:
        dst_type, src = args[0].device.type, args[1]
        non_blocking = args[2] if len(args) > 2 else kwargs.get("non_blocking", False)
    else:  # _to_copy(src, *, device=..., non_blocking=...)
        src, target = args[0], kwargs.get("device")
        if target is None:
            return False
        dst_type, non_blocking = torch.device(target).type, kwargs.get("non_blocking", False)
    src_type = src.device.type
    if src_type == dst_type or "meta" in (src_type, dst_type):
        return False
    if dst_type == "cpu":
        return True
    return src_type == "cpu" and not non_blocking


def _waits_for_device(func, args, kwargs) -> bool:
    """True when the operator's result shape or value must be read back by the host."""
    if func in _COPY_OPS:
        return _copy_waits(func, args, kwargs)
    if func in _INDEX_OPS:  # integer indices are asynchronous; boolean masks are not
        indices = args[1] if len(args) > 1 else ()
        return any(t is not None and t.dtype == torch.bool for t in indices)
    return any(tag in func.tags for tag in _SYNC_TAGS)


class OpCensus(TorchDispatchMode):
    """Within `with OpCensus() as census:`, count compute operators, host waits, and the
    elements each operator writes (how much work: e.g. the pixels a warp samples).

    Views and other metadata-only operators launch nothing and are left out.
    """

    def __init__(self):
        super().__init__()
        self.ops: Counter = Counter()
        self.syncs: Counter = Counter()
        self.elements: Counter = Counter()
        self._host_made: dict[int, torch.Tensor] = {}  # by id; held, so that no other tensor takes the id

    def _copies_host_data(self, func, args) -> bool:
        """`t[i] = 0` copies a host scalar into the tensor: on a GPU a blocking upload, on a CPU
        a copy between host tensors that the device rules cannot tell from any other."""
        return func == torch.ops.aten.copy_.default and id(args[1]) in self._host_made

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        if func == torch.ops.aten.lift_fresh.default:  # Python data made a tensor, on the host
            self._host_made[id(out)] = out
        elif not func.is_view:
            name = str(func.overloadpacket.__name__)
            self.ops[name] += 1
            if _waits_for_device(func, args, kwargs or {}) or self._copies_host_data(func, args):
                self.syncs[name] += 1
            results = out if isinstance(out, (tuple, list)) else (out,)
            self.elements[name] += sum(t.numel() for t in results if isinstance(t, torch.Tensor))
        return out

    @property
    def n_ops(self) -> int:
        return sum(self.ops.values())

    @property
    def n_syncs(self) -> int:
        return sum(self.syncs.values())
