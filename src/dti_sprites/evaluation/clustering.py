"""Scores of the single-object benchmarks (docs/method.md §3): clustering, cosegmentation, unlabelled.

- clustering: the prediction of an image is the sprite chosen for its single object layer.
  `nmi` is the normalised mutual information (arithmetic mean normalisation). Clusters are
  mapped to classes by Hungarian matching when there are as many sprites as classes, else
  each cluster goes to its most frequent class (majority vote); `acc` is the accuracy after
  that mapping, `mean_acc` the mean of the per-class accuracies, and with `eval_semantic`
  every class's accuracy `acc_<class index>` is reported too.
- cosegmentation: a pixel is foreground when the chosen sprite's transformed mask is > 0.5
  (any object layer's, with several). Counts are accumulated over every pixel of the set.
  An unsupervised model may explain the object with the background and the rest with the
  sprite, so both assignments (predicted foreground = true foreground, or = true background)
  are scored and the one with the higher pixel accuracy is kept; `swapped` says which (1.0
  when swapped). `acc` is the pixel accuracy and `iou` the foreground IoU under it.
- unlabelled: only the mean reconstruction loss.

Every evaluator also returns `loss`, the mean per-image reconstruction error.
"""

import numpy as np
import torch
from scipy.optimize import linear_sum_assignment
from sklearn.metrics import normalized_mutual_info_score

from . import EVALUATORS
from .batches import eval_batches


def contingency(true: np.ndarray, pred: np.ndarray, n_classes: int, n_clusters: int) -> np.ndarray:
    """counts[c, k] = number of items of class c predicted as cluster k: (n_classes, n_clusters)."""
    flat = true.astype(np.int64) * n_clusters + pred.astype(np.int64)
    return np.bincount(flat, minlength=n_classes * n_clusters).reshape(n_classes, n_clusters)


def cluster_to_class(counts: np.ndarray) -> np.ndarray:
    """Class of each cluster: Hungarian matching when square, else majority vote: (n_clusters,)."""
    n_classes, n_clusters = counts.shape
    if n_classes == n_clusters:
        classes, clusters = linear_sum_assignment(counts, maximize=True)
        mapping = np.empty(n_clusters, dtype=np.int64)
        mapping[clusters] = classes
        return mapping
    return counts.argmax(0)


def clustering_scores(
    true: np.ndarray, pred: np.ndarray, n_classes: int, n_clusters: int, per_class: bool = True
) -> dict[str, float]:
    """NMI, accuracy and mean accuracy (and per-class accuracies) of cluster indices `pred`."""
    true, pred = np.asarray(true), np.asarray(pred)
    if true.shape != pred.shape or true.ndim != 1 or true.size == 0:
        raise ValueError(f"expected two equal non-empty 1-D label arrays, got {true.shape} and {pred.shape}")
    counts = contingency(true, pred, n_classes, n_clusters)  # (n_classes, n_clusters)
    mapped = cluster_to_class(counts)[pred]  # (N,) predicted class of each item
    class_sizes = np.bincount(true, minlength=n_classes)
    class_hits = np.bincount(true[mapped == true], minlength=n_classes)
    with np.errstate(invalid="ignore", divide="ignore"):
        class_acc = class_hits / class_sizes  # nan for a class absent from the set
    scores = {
        "nmi": float(normalized_mutual_info_score(true, pred, average_method="arithmetic")),
        "acc": float((mapped == true).mean()),
        "mean_acc": float(np.nanmean(class_acc)),
    }
    if per_class:
        scores.update({f"acc_{c}": float(a) for c, a in enumerate(class_acc)})
    return scores


def foreground_scores(counts: np.ndarray) -> dict[str, float]:
    """Accuracy and foreground IoU from pixel counts[true, pred] (2, 2), the better assignment."""
    best = None
    for swapped, table in ((0.0, counts), (1.0, counts[:, ::-1])):
        total = table.sum()
        acc = (table[0, 0] + table[1, 1]) / total if total else float("nan")
        union = table[1, 1] + table[0, 1] + table[1, 0]
        iou = table[1, 1] / union if union else float("nan")
        if best is None or acc > best["acc"]:
            best = {"acc": float(acc), "iou": float(iou), "swapped": swapped}
    return best


@EVALUATORS.register("clustering")
def evaluate_clustering(
    model,
    dataset,
    device,
    batch_size: int = 32,
    eval_semantic: bool = True,
    eval_with_bkg: bool = True,
    n_classes: int | None = None,
    progress: bool = False,
) -> dict:
    """Cluster of each image = its chosen sprite (single layer); labels are the second item."""
    losses, preds, labels = [], [], []
    for out, (_, label) in eval_batches(model, dataset, device, batch_size, progress):
        losses.append(out.loss.cpu())
        preds.append(out.sprite_idx[0].cpu())  # (B,) the first (single) object layer
        labels.append(label.reshape(-1))
    true, pred = torch.cat(labels).numpy(), torch.cat(preds).numpy()
    n_classes = n_classes or int(true.max()) + 1
    scores = {"loss": float(torch.cat(losses).mean())}
    scores.update(clustering_scores(true, pred, n_classes, model.n_candidates, per_class=eval_semantic))
    return scores


@EVALUATORS.register("cosegmentation")
def evaluate_cosegmentation(
    model,
    dataset,
    device,
    batch_size: int = 32,
    eval_semantic: bool = True,
    eval_with_bkg: bool = True,
    n_classes: int | None = None,
    progress: bool = False,
) -> dict:
    """Foreground = transformed mask of a chosen sprite > 0.5; masks are the second item."""
    losses, counts = [], np.zeros((2, 2), dtype=np.int64)
    for out, (_, mask) in eval_batches(model, dataset, device, batch_size, progress):
        losses.append(out.loss.cpu())
        objects = out.object_masks[:, :, 0]  # (L, B, H, W)
        fg = (objects > 0.5).any(0).cpu().long()  # (B, H, W)
        counts += contingency((mask > 0).long().flatten().numpy(), fg.flatten().numpy(), 2, 2)
    scores = {"loss": float(torch.cat(losses).mean())}
    scores.update(foreground_scores(counts))
    return scores


@EVALUATORS.register("unlabelled")
def evaluate_unlabelled(
    model,
    dataset,
    device,
    batch_size: int = 32,
    eval_semantic: bool = True,
    eval_with_bkg: bool = True,
    n_classes: int | None = None,
    progress: bool = False,
) -> dict:
    """No labels: the mean reconstruction loss only."""
    losses = [out.loss.cpu() for out, _ in eval_batches(model, dataset, device, batch_size, progress)]
    return {"loss": float(torch.cat(losses).mean())}
