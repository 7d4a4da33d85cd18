"""Evaluation by benchmark kind (SPEC §3): a dataset's `kind` names the evaluator to use.

Each evaluator is called as (model, dataset, device, batch_size=..., eval_semantic=...,
eval_with_bkg=..., n_classes=..., progress=...) and returns a flat dict of float scores.
"""

from ..registry import Registry

EVALUATORS = Registry("benchmark kind")


def evaluate_model(kind: str, model, dataset, device, **options) -> dict:
    from . import clustering, evaluate  # noqa: F401  (registers the built-in evaluators)

    return EVALUATORS.get(kind)(model, dataset, device, **options)
