"""Scores of the clustering benchmarks (docs/method.md §3): one object per image, one class per image.

The prediction of an image is the sprite chosen for its single object layer. `nmi` is the
normalised mutual information (arithmetic mean normalisation). Clusters are mapped to classes
by Hungarian matching when there are as many sprites as classes, else each cluster goes to its
most frequent class (majority vote); `acc` is the accuracy after that mapping, `mean_acc` the
mean of the per-class accuracies, and with `eval_semantic` every class's accuracy
`acc_<class index>` is reported too. `loss` is the mean per-image reconstruction error.
"""

import numpy as np
import torch
from scipy.optimize import linear_sum_assignment
from sklearn.metrics import normalized_mutual_info_score

from . import EVALUATORS
from .batches import eval_batches
from .metrics import contingency


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
