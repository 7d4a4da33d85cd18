"""Evaluation by benchmark kind (docs/method.md §3): a dataset's `kind` names the evaluator to use.

Each evaluator is called as (model, dataset, device, batch_size=..., eval_semantic=...,
eval_with_bkg=..., n_classes=..., progress=...) and returns a flat dict of float scores.
"""

import json
import math

from ..registry import Registry

EVALUATORS = Registry("benchmark kind")


def evaluate_model(kind: str, model, dataset, device, **options) -> dict:
    from . import clustering, cosegmentation, multi_object, unlabelled  # noqa: F401  (registers the built-in evaluators)

    return EVALUATORS.get(kind)(model, dataset, device, **options)


def nan_as_null(scores: dict) -> dict:
    """Scores ready for strict JSON: an undefined score (NaN, e.g. the IoU of a class absent
    from the images) becomes None (null), since NaN is not JSON and breaks strict readers."""
    return {k: v if not (isinstance(v, float) and not math.isfinite(v)) else None for k, v in scores.items()}


def scores_json(scores: dict, indent: int | None = None) -> str:
    """Scores as strict JSON, undefined ones as null."""
    return json.dumps(nan_as_null(scores), indent=indent, allow_nan=False)
