"""Segmentation scores of the multi-object benchmarks (docs/method.md §3).

Instance: adjusted Rand index per image, averaged, over all pixels (`ari`) or over
ground-truth foreground pixels only (`ari_fg`), computed batched in torch from contingency
tables.
Semantic: a confusion matrix accumulated over batches, then predicted labels mapped to true
classes by Hungarian matching before accuracy and IoU.

Label maps travel as (B, N) or (B, H, W) integer tensors. `contingency` counts label pairs in
numpy for the single-object benchmarks.
"""

import numpy as np
import torch
from scipy.optimize import linear_sum_assignment


def _sum_squared_sizes(key: torch.Tensor, valid: torch.Tensor, per_image: int, B: int) -> torch.Tensor:
    """Per image, the sum over groups of (group size)^2; key (B, N) encodes image * per_image + group."""
    groups, sizes = torch.unique(key[valid], return_counts=True)  # (G,), (G,)
    out = torch.zeros(B, dtype=torch.long, device=key.device)
    return out.index_add_(0, groups // per_image, sizes * sizes)  # (B,)


def adjusted_rand_index(true: torch.Tensor, pred: torch.Tensor, valid: torch.Tensor | None = None) -> torch.Tensor:
    """ARI of each image, (B,) float64; nan where an image has no valid pixel.

    true, pred: (B, N) non-negative integer labels; valid: (B, N) bool pixels to count.
    Degenerate cases follow sklearn.metrics.adjusted_rand_score (e.g. two single-cluster
    labelings score 1.0) because it is written on the same pair-counting form.
    """
    if true.shape != pred.shape or true.dim() != 2:
        raise ValueError(f"expected true and pred of one shape (B, N), got {tuple(true.shape)} and {tuple(pred.shape)}")
    B = true.shape[0]
    if true.numel() == 0:
        return torch.full((B,), float("nan"), dtype=torch.float64, device=true.device)
    if valid is None:
        valid = torch.ones_like(true, dtype=torch.bool)
    # Compact labels over the batch so every (image, true, pred) triple fits one int64 key.
    t = torch.unique(true, return_inverse=True)[1]  # (B, N) in 0..Kt-1
    p = torch.unique(pred, return_inverse=True)[1]  # (B, N) in 0..Kp-1
    Kt, Kp = int(t.max()) + 1, int(p.max()) + 1
    image = torch.arange(B, device=true.device)[:, None]  # (B, 1)
    valid = valid.bool()
    n = valid.sum(dim=1)  # (B,)
    # Sums of squared cluster sizes from the non-empty cells only, never a dense table.
    sum_sq = _sum_squared_sizes((image * Kt + t) * Kp + p, valid, Kt * Kp, B)  # (B,) contingency cells
    sum_sq_true = _sum_squared_sizes(image * Kt + t, valid, Kt, B)  # (B,) true clusters
    sum_sq_pred = _sum_squared_sizes(image * Kp + p, valid, Kp, B)  # (B,) predicted clusters
    # Ordered pair counts: same cluster in both, only in pred, only in true, in neither.
    tp = (sum_sq - n).double()
    fp = (sum_sq_pred - sum_sq).double()
    fn = (sum_sq_true - sum_sq).double()
    tn = (n * n - sum_sq_pred - sum_sq_true + sum_sq).double()
    denom = (tp + fn) * (fn + tn) + (tp + fp) * (fp + tn)
    ari = 2.0 * (tp * tn - fn * fp) / denom.clamp(min=1)  # denom > 0 unless fn = fp = 0
    ari = torch.where((fn == 0) & (fp == 0), torch.ones_like(ari), ari)  # perfect agreement
    return torch.where(n == 0, torch.full_like(ari, float("nan")), ari)


def mean_ari(true_inst: torch.Tensor, pred_inst: torch.Tensor, foreground_only: bool = False) -> float:
    """ARI per image averaged over images, on all pixels or on ground-truth foreground (true != 0).

    Images without foreground have no foreground ARI and are left out of that mean.
    """
    true = true_inst.reshape(true_inst.shape[0], -1)  # (B, N)
    pred = pred_inst.reshape(pred_inst.shape[0], -1)  # (B, N)
    ari = adjusted_rand_index(true, pred, valid=true != 0 if foreground_only else None)  # (B,)
    return float(ari.nanmean() if foreground_only else ari.mean())


def contingency(true: np.ndarray, pred: np.ndarray, n_classes: int, n_clusters: int) -> np.ndarray:
    """counts[c, k] = number of items of class c predicted as cluster k: (n_classes, n_clusters)."""
    flat = true.astype(np.int64) * n_clusters + pred.astype(np.int64)
    return np.bincount(flat, minlength=n_classes * n_clusters).reshape(n_classes, n_clusters)


class ConfusionMatrix:
    """Pixel counts `matrix[pred, true]` of shape (n_pred, n_true), accumulated over batches.

    Predicted labels are 0 for background and sprite index + 1; true labels are class ids.
    """

    def __init__(self, n_true: int, n_pred: int):
        self.n_true, self.n_pred = n_true, n_pred
        self.counts = torch.zeros(n_pred * n_true, dtype=torch.long)

    def update(self, true: torch.Tensor, pred: torch.Tensor) -> None:
        """Add one batch of label maps, true and pred (B, H, W) long."""
        if true.shape != pred.shape:
            raise ValueError(f"expected true and pred of one shape, got {tuple(true.shape)} and {tuple(pred.shape)}")
        true, pred = true.reshape(-1), pred.reshape(-1)  # (B*H*W,)
        for what, labels, limit in (("true", true, self.n_true), ("pred", pred, self.n_pred)):
            if labels.numel() and (labels.min() < 0 or labels.max() >= limit):
                raise ValueError(
                    f"{what} labels span {int(labels.min())}..{int(labels.max())}; expected 0..{limit - 1}"
                )
        cell = pred * self.n_true + true  # (B*H*W,) flat index into (n_pred, n_true)
        self.counts += torch.bincount(cell, minlength=self.n_pred * self.n_true).cpu()

    @property
    def matrix(self) -> np.ndarray:
        """(n_pred, n_true) int64 counts."""
        return self.counts.view(self.n_pred, self.n_true).numpy().copy()


def _ratio(num: np.ndarray, den: np.ndarray) -> np.ndarray:
    """num / den with nan where den is 0 (a class that never occurs carries no score)."""
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(den > 0, num / np.maximum(den, 1), np.nan)


def _nanmean(x: np.ndarray) -> float:
    x = x[~np.isnan(x)]
    return float(x.mean()) if len(x) else float("nan")


def semantic_scores(confusion: np.ndarray, class_names: list[str] | None = None) -> dict[str, float]:
    """Accuracy and IoU after matching predicted labels to true classes.

    confusion: (n_pred, n_true) pixel counts, rows predicted labels, columns true classes
    (class 0 = background), as `ConfusionMatrix.matrix` gives. Each predicted label is
    matched to at most one class by Hungarian matching maximizing correct pixels; pixels of
    unmatched labels count as wrong and are not counted as predictions of any class.
    Returns global/mean accuracy and mean IoU with and without background (`_fg`), and
    `iou_<class name>` per true class (names default to the class ids).
    """
    confusion = np.asarray(confusion, dtype=np.float64)
    n_pred, n_true = confusion.shape
    names = [str(c) for c in range(n_true)] if class_names is None else list(class_names)
    if len(names) != n_true:
        raise ValueError(f"got {len(names)} class names for a confusion matrix with {n_true} true classes")
    rows, cols = linear_sum_assignment(confusion, maximize=True)
    mapped = np.zeros((n_true, n_true))  # (class predicted, true class)
    mapped[cols] = confusion[rows]

    correct = np.diag(mapped)  # (n_true,)
    gt = confusion.sum(axis=0)  # (n_true,) pixels of each true class, unmatched labels included
    predicted = mapped.sum(axis=1)  # (n_true,) pixels assigned to each class
    acc = _ratio(correct, gt)
    iou = _ratio(correct, gt + predicted - correct)

    scores = {
        "global_acc": float(_ratio(correct.sum(), gt.sum())),
        "mean_acc": _nanmean(acc),
        "mean_iou": _nanmean(iou),
        "global_acc_fg": float(_ratio(correct[1:].sum(), gt[1:].sum())),
        "mean_acc_fg": _nanmean(acc[1:]),
        "mean_iou_fg": _nanmean(iou[1:]),
    }
    scores.update({f"iou_{name}": float(v) for name, v in zip(names, iou)})
    return scores
