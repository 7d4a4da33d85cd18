"""Held-out ARI-FG of a Tetrominoes model by what its scenes ask: pieces apart, pieces
touching, pieces of one colour touching (their boundary is invisible), and unions that tile
in several ways (no model can tell those pieces apart). Where a trained model still errs.

    .venv/bin/python scripts/tetro_contacts.py --run pretrained/tetrominoes --data datasets/tetro_heldout
"""

import argparse
import json

import numpy as np
import torch

from dti_sprites.config import validate
from dti_sprites.data import build_dataset
from dti_sprites.data.tetrominoes import CONTACT_KINDS, contact_kind
from dti_sprites.evaluation.batches import eval_batches
from dti_sprites.evaluation.metrics import adjusted_rand_index
from dti_sprites.evaluation.multi_object import front_layer
from dti_sprites.training.checkpoint import load_trained_model


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run", required=True, help="run folder (or model.pkl) of a Tetrominoes model")
    parser.add_argument("--data", required=True, help="Tetrominoes folder to score (images/, masks/)")
    args = parser.parse_args()
    model, ckpt = load_trained_model(args.run)
    cfg = validate(ckpt["config"])
    if cfg["dataset"]["name"] != "tetrominoes":
        raise SystemExit(f"--run {args.run}: a {cfg['dataset']['name']} model; expected one trained on tetrominoes")
    cfg["dataset"]["path"] = args.data
    dataset, _ = build_dataset(cfg, "eval")
    scores, kinds = [], []
    for out, (images, inst, _) in eval_batches(model, dataset, "cpu", 64, progress=False):
        flat = inst.flatten(1)
        scores.append(adjusted_rand_index(flat, front_layer(out).flatten(1), flat != 0))
        pixels = (images * 255).round().byte().permute(0, 2, 3, 1).numpy()
        kinds += [contact_kind(p, i) for p, i in zip(pixels, inst.numpy())]
    ari, kinds = torch.cat(scores).numpy(), np.array(kinds)
    report = {"all": {"images": len(ari), "ari_fg": round(float(ari.mean()), 4)}}
    for kind in CONTACT_KINDS:
        chosen = kinds == kind
        if chosen.any():
            report[kind] = {"images": int(chosen.sum()), "ari_fg": round(float(ari[chosen].mean()), 4)}
    print(json.dumps(report))


if __name__ == "__main__":
    main()
