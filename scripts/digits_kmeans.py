"""The k-means floor of the digits benchmark: scikit-learn KMeans (10 clusters) on the same
pixels configs/digits.yml trains on, scored like the model (Hungarian accuracy, NMI).

    .venv/bin/python scripts/digits_kmeans.py [--img-size 16] [--seeds 5]
"""

import argparse
import json

import numpy as np
from sklearn.cluster import KMeans

from dti_sprites.data import DATASETS
from dti_sprites.evaluation.clustering import clustering_scores


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--img-size", type=int, default=16, help="pixels per side, as dataset.img_size")
    parser.add_argument("--seeds", type=int, default=5, help="k-means runs (random_state 0..seeds-1)")
    args = parser.parse_args()
    ds = DATASETS.get("digits")(None, "eval", img_size=(args.img_size, args.img_size))
    X, y = ds.images.flatten(1).numpy(), ds.labels.numpy()
    runs = []
    for seed in range(args.seeds):
        pred = KMeans(10, n_init=10, random_state=seed).fit_predict(X)
        scores = clustering_scores(y, pred, 10, 10, per_class=False)
        runs.append(scores)
    summary = {k: (float(np.mean([r[k] for r in runs])), float(np.std([r[k] for r in runs]))) for k in runs[0]}
    print(json.dumps({"img_size": args.img_size, "seeds": args.seeds, "mean_std": summary}))


if __name__ == "__main__":
    main()
