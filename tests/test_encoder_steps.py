"""training.optimizer.encoder_steps_per_iter: the original's repeated encoder updates (docs/method.md §2.1)."""

import copy
import warnings

import pytest
import torch

from dti_sprites.config import validate
from dti_sprites.errors import ConfigError
from dti_sprites.model.sprites_model import DTISprites
from dti_sprites.training.optim import build_optimizer

from conftest import small_config

LR, WEIGHT_DECAY = 1e-2, 0.1  # a weight decay large enough to show up after a few steps


def _model_and_config(steps: int):
    cfg = small_config(
        training={
            "optimizer": {"lr": LR, "transformer": {"weight_decay": WEIGHT_DECAY}, "encoder_steps_per_iter": steps}
        }
    )
    torch.manual_seed(0)
    model = DTISprites(cfg["model"], (16, 16), 3)
    for param in model.parameters():
        param.grad = torch.randn_like(param)
    return model, cfg["training"]["optimizer"]


def _twin(model):
    """A copy of the model with the same gradients."""
    twin = copy.deepcopy(model)
    for mine, theirs in zip(model.parameters(), twin.parameters()):
        theirs.grad = mine.grad.clone()
    return twin


def test_k_steps_are_k_adam_updates_of_the_encoder_with_the_same_gradient():
    model, opt_cfg = _model_and_config(3)
    ref = _twin(model)
    encoder = set(ref.encoder.parameters())
    rest = [p for p in ref.transformer_parameters() if p not in encoder]
    adam = dict(lr=LR, fused=True)
    ref_encoder = torch.optim.Adam(list(encoder), weight_decay=WEIGHT_DECAY, **adam)
    ref_rest = torch.optim.Adam(
        [{"params": ref.cluster_parameters()}, {"params": rest, "weight_decay": WEIGHT_DECAY}], **adam
    )
    opt = build_optimizer(model, opt_cfg)
    for _ in range(2):  # iterations; the gradient stays the same within each
        opt.step()
        ref_rest.step()
        for _ in range(3):
            ref_encoder.step()
    for (name, mine), theirs in zip(model.named_parameters(), ref.parameters()):
        assert torch.equal(mine, theirs), name
    encoder_weight = next(model.encoder.parameters())
    assert int(opt.state[encoder_weight]["step"]) == 6 and int(opt.state[model.prototypes]["step"]) == 2


def test_k_steps_match_the_original_optimizer_listing_the_encoder_k_times():
    """The original's construction: the encoder's tensors repeated in Adam's list, per-tensor Adam."""
    model, opt_cfg = _model_and_config(3)
    ref = _twin(model)
    listed = ref.transformer_parameters() + list(ref.encoder.parameters()) * 2
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torch warns about the duplicates the original had
        original = torch.optim.Adam(
            [{"params": ref.cluster_parameters()}, {"params": listed, "weight_decay": WEIGHT_DECAY}],
            lr=LR,
            foreach=False,
        )
    opt = build_optimizer(model, opt_cfg)
    start = next(model.encoder.parameters()).detach().clone()
    for _ in range(2):
        opt.step()
        original.step()
    for (name, mine), theirs in zip(model.named_parameters(), ref.parameters()):
        torch.testing.assert_close(mine, theirs, rtol=0, atol=1e-6, msg=name)
    moved = (next(model.encoder.parameters()) - start).abs().max()
    assert moved > 3 * LR  # Adam moves a tensor about lr per update: more than two updates were made


def test_one_step_is_plain_adam():
    model, opt_cfg = _model_and_config(1)
    ref = _twin(model)
    plain = torch.optim.Adam(
        [{"params": ref.cluster_parameters()}, {"params": ref.transformer_parameters(), "weight_decay": WEIGHT_DECAY}],
        lr=LR,
        fused=True,
    )
    build_optimizer(model, opt_cfg).step()
    plain.step()
    for mine, theirs in zip(model.parameters(), ref.parameters()):
        assert torch.equal(mine, theirs)


def test_state_dict_keeps_adam_layout_and_resumes_exactly():
    model, opt_cfg = _model_and_config(3)
    opt = build_optimizer(model, opt_cfg)
    opt.step()
    state = copy.deepcopy(opt.state_dict())
    assert [g["name"] for g in state["param_groups"]] == ["cluster", "transformer"]  # any k: the same layout

    resumed_model = _twin(model)
    resumed = build_optimizer(resumed_model, opt_cfg)
    resumed.load_state_dict(state)
    opt.step()
    resumed.step()
    for mine, theirs in zip(model.parameters(), resumed_model.parameters()):
        assert torch.equal(mine, theirs)
    build_optimizer(_twin(model), {**opt_cfg, "encoder_steps_per_iter": 1}).load_state_dict(state)  # k may change


def test_scheduled_lr_reaches_the_repeated_steps():
    model, opt_cfg = _model_and_config(2)
    ref = _twin(model)
    opt = build_optimizer(model, opt_cfg)
    opt.param_groups[1]["lr"] = 0.0  # as a scheduler would set it: the encoder must not move at all
    before = [p.clone() for p in model.encoder.parameters()]
    opt.step()
    for old, new in zip(before, model.encoder.parameters()):
        assert torch.equal(old, new)
    assert not torch.equal(model.prototypes, ref.prototypes)  # the cluster group did step


@pytest.mark.parametrize("value, problem", [(0, "an integer >= 1"), (2.5, "an integer"), (True, "an integer")])
def test_encoder_steps_is_checked(value, problem):
    cfg = small_config()
    cfg["training"]["optimizer"]["encoder_steps_per_iter"] = value
    with pytest.raises(ConfigError, match=rf"training\.optimizer\.encoder_steps_per_iter: expected {problem}"):
        validate(cfg)
