"""Validating configs: the one place that knows every key (config_files.py reads the files).

Keys keep the original release's names so that users can carry their files over. A config
is a plain nested dict (sections `dataset`, `model`, `training`) once validated: every key
present, defaults filled in, types checked. Plain dicts also travel safely inside
checkpoints, which are loaded with `weights_only=True`.
"""

from __future__ import annotations

import copy
from typing import Any, Callable

from .errors import ConfigError

_REQUIRED = object()


class Key:
    """One config key: accepted types, default, and an optional extra check."""

    def __init__(
        self,
        types: tuple,
        default: Any = _REQUIRED,
        check: Callable[[Any], str | None] | None = None,
        expected: str = "",
    ):
        self.types, self.default, self.check, self.expected = types, default, check, expected


def _positive(v):
    return None if v > 0 else "a positive number"


def _non_negative(v):
    return None if v >= 0 else "a number >= 0"


def _one_of(*choices):
    def check(v):
        return None if v in choices else "one of " + ", ".join(map(str, choices))

    return check


def _size_pair(v):
    if isinstance(v, int):
        return None if v > 0 else "a positive integer or a list [H, W]"
    ok = (
        isinstance(v, list) and len(v) == 2 and all(isinstance(x, int) and not isinstance(x, bool) and x > 0 for x in v)
    )
    return None if ok else "a positive integer or a list of two positive integers [H, W]"


def _milestones(v):
    if v is False or v is None:
        return None
    ok = isinstance(v, list) and all(isinstance(x, int) and not isinstance(x, bool) and x >= 0 for x in v)
    ok = ok and all(a <= b for a, b in zip(v, v[1:]))
    return None if ok else "false or an increasing list of epoch numbers"


def _object_range(v):
    ok = len(v) == 2 and all(isinstance(n, int) and not isinstance(n, bool) for n in v) and 1 <= v[0] <= v[1]
    return None if ok else "a list [min, max] of object counts, 1 <= min <= max"


def _temperatures(v):
    ok = len(v) == 2 and all(isinstance(t, (int, float)) and not isinstance(t, bool) and t > 0 for t in v)
    return None if ok else "a list [start, end] of two positive temperatures"


INT, FLOAT, BOOL, STR, LIST, NONE, DICT = int, float, bool, str, list, type(None), dict
COMPILE_MODES = ("default", "reduce-overhead", "max-autotune")
REASSIGN_RULES = ("split", "pooled", "original")  # training/reassign.py
SELECTIONS = ("greedy", "exhaustive", "learned")  # docs/method.md §1.8
SELECTION_ESTIMATORS = ("gumbel", "straight_through", "shortlist")  # model/learned_selection.py
INIT_CHOICES = ("constant", "gaussian", "sample", "mean", "random", "soup", "random_color", "kmeans")

SCHEMA: dict[str, dict[str, Key]] = {
    "dataset": {
        "name": Key((STR,), expected="a dataset name"),
        "img_size": Key((INT, LIST, NONE), None, lambda v: v is None or _size_pair(v)),
        "data_root": Key((STR,), "datasets"),
        "path": Key((STR, NONE), None),
        # Images to generate when a synthetic stand-in is created on first use (None: the real set's size).
        "synthetic_size": Key((INT, NONE), None, lambda v: v is None or _positive(v)),
        # dsprites_gray: sprites per generated image, [min, max] (null: 2 to 5, as Multi-dSprites).
        "synthetic_objects": Key((LIST, NONE), None, lambda v: v is None or _object_range(v)),
        # Drop images that fail to decode (counted and named in the log) instead of stopping.
        "skip_corrupt": Key((BOOL,), False),
        # instagram: the hashtag whose collection <data_root>/instagram/<tag>/train/ is read.
        "tag": Key((STR,), "santaphoto"),
        # image_folder, instagram: centre crop to the target aspect ratio then resize, or resize only.
        "resize_policy": Key((STR,), "center_crop", _one_of("center_crop", "resize")),
        # svhn: also train on the 531k `extra` images (the paper uses test + train).
        "use_extra": Key((BOOL,), False),
    },
    "model": {
        "name": Key((STR,), "dti_sprites", _one_of("dti_sprites")),
        "n_sprites": Key((INT,), expected="the number of sprites K", check=_positive),
        "n_backgrounds": Key((INT,), 0, _non_negative),
        "n_objects": Key((INT,), 1, _positive),
        "add_empty_sprite": Key((BOOL,), False),
        "lambda_empty_sprite": Key((FLOAT,), 0.0, _non_negative),
        "freeze_sprite": Key(
            (INT, BOOL),
            0,
            lambda v: None if v is False or (v is not True and v >= 0) else "an epoch count >= 0 or false",
        ),
        "inject_noise": Key((FLOAT,), 0.0, _non_negative),
        "encoder_name": Key((STR,), "default"),
        "with_pool": Key((INT, LIST), 1, _size_pair),
        "n_hidden_layers": Key((INT,), 2, _positive),
        "norm_layer": Key((STR, NONE), None, lambda v: None if v in (None, "bn", "batch_norm") else "null or bn"),
        "transformation_sequence": Key((STR,), "identity"),
        "transformation_sequence_bkg": Key((STR,), "identity"),
        "transformation_sequence_layer": Key((STR,), "identity"),
        "curriculum_learning": Key((BOOL, LIST, NONE), False, _milestones),
        "curriculum_learning_bkg": Key((BOOL, LIST, NONE), False, _milestones),
        "curriculum_learning_layer": Key((BOOL, LIST, NONE), False, _milestones),
        "grid_size": Key((INT,), 4, lambda v: None if v >= 2 else "an integer >= 2"),
        "kernel_size": Key((INT,), 3, lambda v: None if v >= 1 and v % 2 == 1 else "an odd positive integer"),
        "proto_init": Key((STR,), "constant", _one_of(*INIT_CHOICES)),
        "mask_init": Key((STR,), "gaussian", _one_of(*INIT_CHOICES)),
        "bkg_init": Key((STR,), "constant", _one_of(*INIT_CHOICES)),
        "sprite_size": Key((INT, LIST, NONE), None, lambda v: v is None or _size_pair(v)),
        "gaussian_weights_std": Key((FLOAT,), 25.0, _positive),
        "pred_occlusion": Key((BOOL,), False),
        # How each layer's sprite is chosen (docs/method.md §1.8). null: the original release's estimate_minimum
        # decides (true: greedy, false: exhaustive); learned predicts it and renders one sprite per layer.
        "selection": Key((STR, NONE), None, lambda v: v is None or _one_of(*SELECTIONS)(v)),
        "estimate_minimum": Key((BOOL,), False),
        "greedy_algo_iter": Key((INT,), 1, _positive),
        # learned only (model/learned_selection.py): straight_through draws the argmax, gumbel adds Gumbel noise
        # first, shortlist renders selection_shortlist proposed sprites and keeps the best; the temperature falls
        # geometrically from the first value to the second over selection_anneal_iterations;
        # selection_usage_weight weighs the batch's sprite usage against uniform.
        "selection_estimator": Key((STR,), "straight_through", _one_of(*SELECTION_ESTIMATORS)),
        "selection_temperature": Key((LIST,), [2.0, 0.5], _temperatures),
        "selection_anneal_iterations": Key((INT,), 10000, _positive),
        "selection_usage_weight": Key((FLOAT,), 0.01, _non_negative),
        # learned only: step size of the per-sprite offsets that spread the draws (0: off)
        "selection_balance_rate": Key((FLOAT,), 0.0, _non_negative),
        # shortlist only: candidates the head proposes per layer, rendered and compared exactly
        "selection_shortlist": Key((INT,), 4, _positive),
        # learned only: what the head reads, the pooled features alone or also the feature map at each layer's
        # centre (model/position_readout.py)
        "selection_readout": Key((STR,), "pooled", _one_of("pooled", "position")),
        "use_clamp": Key((STR, BOOL), "soft"),
        "reassign_cluster": Key((BOOL,), True),
        "empty_cluster_threshold": Key((FLOAT, NONE), None, lambda v: v is None or _non_negative(v)),
        # How empty sprites are found and restarted (training/reassign.py): split (default), pooled,
        # or original (the paper's: one random layer judges, its most used sprite is copied everywhere).
        "reassign_rule": Key((STR,), "split", _one_of(*REASSIGN_RULES)),
        # An object layer whose mean drawn mask falls below this fraction of the layers' mean is
        # restarted at the identity placement (training/dead_layers.py); null: never (the paper).
        "dead_layer_threshold": Key((FLOAT, NONE), 0.05, lambda v: v is None or _non_negative(v)),
    },
    "training": {
        "batch_size": Key((INT,), 32, _positive),
        "n_workers": Key((INT,), 0, _non_negative),
        # Keep the training images on the device (auto: when their uint8 copy fits), else stream them.
        "resident": Key((STR, BOOL), "auto", lambda v: None if v in ("auto", True, False) else "auto, true or false"),
        "optimizer": Key((DICT,), None),
        "scheduler": Key((DICT, NONE), None),
        "n_epoches": Key((INT, NONE), None, lambda v: v is None or _positive(v)),
        "n_iterations": Key((INT, NONE), None, lambda v: v is None or _positive(v)),
        "train_stat_interval": Key((INT,), 100, _positive),
        "val_stat_interval": Key((INT,), 500, _positive),
        "check_cluster_interval": Key((INT,), 100, _positive),
        # Fraction of the planned iterations after which reassignment restarts no sprite (1.0: never stops, the
        # paper). A copy made once the learning rate has dropped has no time to part from its source.
        "reassign_until": Key((FLOAT,), 1.0, lambda v: None if 0 <= v <= 1 else "a fraction between 0 and 1"),
        # Fraction of the planned iterations after which the weights are averaged, the mean replacing the
        # trained weights at the end (training/weight_average.py); null: never (the paper).
        "average_weights_from": Key(
            (FLOAT, NONE), None, lambda v: None if v is None or 0 <= v < 1 else "null or a fraction in [0, 1)"
        ),
        "seed": Key((INT, NONE), None),
        "visualizer_port": Key((INT, NONE), None),
        "tensorboard": Key((BOOL,), False),
        # Opt-in speed-ups that change numerics slightly: bf16 autocast of the encoder; torch.compile of
        # the whole model (true = inductor's default mode, or a mode name: reduce-overhead adds CUDA graphs).
        "amp": Key((BOOL,), False),
        "compile": Key(
            (BOOL, STR),
            False,
            lambda v: (
                None if v in (False, True, *COMPILE_MODES) else "true, false or a mode: " + ", ".join(COMPILE_MODES)
            ),
        ),
        "pretrained": Key((STR, NONE), None),
        "resume": Key((STR, NONE), None),
        "eval_semantic": Key((BOOL,), True),
        "eval_with_bkg": Key((BOOL,), True),
        "time_budget": Key((FLOAT, NONE), None, lambda v: v is None or _positive(v)),
    },
}

OPTIMIZER_SCHEMA = {
    "name": Key((STR,), "adam", _one_of("adam")),
    "lr": Key((FLOAT,), 1e-3, _positive),
    "weight_decay": Key((FLOAT,), 0.0, _non_negative),
    "betas": Key((LIST,), [0.9, 0.999]),
    "cluster": Key((DICT, NONE), None),
    "transformer": Key((DICT, NONE), None),
    # Adam updates of the shared encoder per iteration, with the same gradient: the original moved it once
    # per transformer holding it (docs/method.md §2.1: 7 on dsprites, 8 on clevr6).
    "encoder_steps_per_iter": Key((INT,), 1, lambda v: None if v >= 1 else "an integer >= 1"),
}
GROUP_OVERRIDE_SCHEMA = {
    "lr": Key((FLOAT,), None, _positive),
    "weight_decay": Key((FLOAT,), None, _non_negative),
    "betas": Key((LIST,), None),
}
SCHEDULER_SCHEMA = {
    "name": Key((STR,), "constant_lr", _one_of("multi_step", "constant_lr", "cosine_annealing", "exp_lr", "poly_lr")),
    "gamma": Key((FLOAT, LIST), 0.1),
    "milestones": Key((LIST,), [], _milestones),
    "warmup": Key((INT,), 0, _non_negative),
    "power": Key((FLOAT,), 0.9, _positive),
    "eta_min": Key((FLOAT,), 0.0, _non_negative),
}
SCHEDULER_GROUPS = 2  # cluster, transformer: the length of a per-group gamma list


def _type_name(types: tuple) -> str:
    names = {
        int: "an integer",
        float: "a number",
        bool: "true/false",
        str: "a string",
        list: "a list",
        type(None): "null",
        dict: "a mapping",
    }
    return " or ".join(names[t] for t in types)


def _coerce(value: Any, key: Key, where: str) -> Any:
    """Check a value's type (with the YAML 1.1 quirk that `1e-4` reads as a string)."""
    if FLOAT in key.types and isinstance(value, str):
        try:
            value = float(value)
        except ValueError:
            pass
    if FLOAT in key.types and isinstance(value, int) and not isinstance(value, bool):
        value = float(value)
    ok = any(isinstance(value, t) and not (t is INT and isinstance(value, bool)) for t in key.types)
    if not ok:
        raise ConfigError(f"{where}: expected {key.expected or _type_name(key.types)}, got {value!r}")
    if key.check is not None:
        problem = key.check(value)
        if problem not in (None, True):
            raise ConfigError(f"{where}: expected {problem}, got {value!r}")
    return value


def _validate_section(raw: dict | None, schema: dict[str, Key], where: str) -> dict:
    raw = {} if raw is None else raw
    if not isinstance(raw, dict):
        raise ConfigError(f"{where}: expected a mapping of keys, got {raw!r}")
    unknown = sorted(set(raw) - set(schema))
    if unknown:
        raise ConfigError(f"{where}.{unknown[0]}: unknown key; known keys here: {', '.join(sorted(schema))}")
    out = {}
    for name, key in schema.items():
        if name in raw:
            out[name] = _coerce(raw[name], key, f"{where}.{name}")
        elif key.default is _REQUIRED:
            raise ConfigError(f"{where}.{name}: missing; expected {key.expected or _type_name(key.types)}")
        else:
            out[name] = copy.deepcopy(key.default)
    return out


def validate(raw: dict) -> dict:
    """Return a complete config (defaults filled) or raise ConfigError naming the first bad key."""
    if not isinstance(raw, dict):
        raise ConfigError(f"config: expected a mapping with sections {', '.join(SCHEMA)}, got {type(raw).__name__}")
    unknown = sorted(set(raw) - set(SCHEMA))
    if unknown:
        raise ConfigError(f"{unknown[0]}: unknown config section; expected {', '.join(SCHEMA)}")
    if isinstance(raw.get("model"), dict):
        raw = {**raw, "model": upgrade_model_keys(raw["model"])}
    cfg = {name: _validate_section(raw.get(name), schema, name) for name, schema in SCHEMA.items()}
    train, model = cfg["training"], cfg["model"]

    train["optimizer"] = _validate_section(train["optimizer"], OPTIMIZER_SCHEMA, "training.optimizer")
    for group in ("cluster", "transformer"):
        overrides = _validate_section(train["optimizer"][group], GROUP_OVERRIDE_SCHEMA, f"training.optimizer.{group}")
        train["optimizer"][group] = {k: v for k, v in overrides.items() if v is not None}
    sched = _validate_section(train["scheduler"], SCHEDULER_SCHEMA, "training.scheduler")
    if isinstance(sched["gamma"], list):
        if len(sched["gamma"]) != SCHEDULER_GROUPS:
            raise ConfigError(
                f"training.scheduler.gamma: expected a number or a list of {SCHEDULER_GROUPS} factors "
                f"(cluster, transformer), got {sched['gamma']!r}"
            )
        sched["gamma"] = [
            _coerce(g, Key((FLOAT,), check=_positive), "training.scheduler.gamma") for g in sched["gamma"]
        ]
    train["scheduler"] = sched

    if (train["n_epoches"] is None) == (train["n_iterations"] is None):
        raise ConfigError(
            "training.n_epoches / training.n_iterations: expected exactly one of them to be set "
            "(set the other to null, e.g. --set training.n_epoches=null)"
        )
    for suffix, seq_key in (
        ("", "transformation_sequence"),
        ("_bkg", "transformation_sequence_bkg"),
        ("_layer", "transformation_sequence_layer"),
    ):
        milestones = model["curriculum_learning" + suffix]
        if milestones in (None, True):
            if milestones is True:
                raise ConfigError(f"model.curriculum_learning{suffix}: expected false or a list of epoch milestones")
            model["curriculum_learning" + suffix] = False
        elif milestones is not False:
            n_modules = len(model[seq_key].split("_"))
            if len(milestones) != n_modules - 1:
                raise ConfigError(
                    f"model.curriculum_learning{suffix}: expected {n_modules - 1} milestone(s) for the "
                    f"{n_modules} modules of {model[seq_key]!r}, got {milestones!r}"
                )
    if model["freeze_sprite"] is False:
        model["freeze_sprite"] = 0
    model["selection"] = selection_of(model)
    model["selection_temperature"] = [float(t) for t in model["selection_temperature"]]
    if model["n_backgrounds"] > 1 and model["selection"] != "exhaustive":
        raise ConfigError(
            f"model.n_backgrounds: {model['selection']} selection supports 0 or 1 background "
            "(model.selection: exhaustive chooses among several)"
        )
    if model["pred_occlusion"] and model["n_objects"] < 2:
        raise ConfigError("model.pred_occlusion: needs model.n_objects >= 2 (there is no order to predict)")
    return cfg


# Renamed model keys: old name -> (new name, old value -> new value). Old configs and checkpoints keep working.
RENAMED_MODEL_KEYS = {"reassign_layers": ("reassign_rule", {"random": "original", "all": "pooled"})}


def upgrade_model_keys(model: dict) -> dict:
    """A model section with renamed keys under their current names (values mapped), and the
    selection that an older config says with estimate_minimum alone."""
    model = dict(model)
    for old, (new, values) in RENAMED_MODEL_KEYS.items():
        if old in model and new not in model:
            value = model.pop(old)
            model[new] = values.get(value, value)
        model.pop(old, None)
    selection, greedy = model.get("selection"), model.get("estimate_minimum")
    if selection in ("greedy", "exhaustive") and isinstance(greedy, bool) and greedy != (selection == "greedy"):
        raise ConfigError(
            f"model.selection: {selection} contradicts model.estimate_minimum: {str(greedy).lower()} "
            f"(which asks for {'greedy' if greedy else 'exhaustive'}); set them alike or drop estimate_minimum"
        )
    return model


def selection_of(model: dict) -> str:
    """greedy, exhaustive or learned: `selection`, else what `estimate_minimum` says (the original's key)."""
    return model.get("selection") or ("greedy" if model.get("estimate_minimum") is True else "exhaustive")


def size_pair(value, fallback: tuple[int, int]) -> tuple[int, int]:
    """Normalise an int / [H, W] / None size key."""
    if value is None:
        return tuple(fallback)
    if isinstance(value, int):
        return (value, value)
    return (int(value[0]), int(value[1]))
