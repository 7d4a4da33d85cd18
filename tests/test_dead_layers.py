"""Dead-layer restart: a layer drawn off the image is found and placed back, behind the others."""

import torch

from dti_sprites.model.sprites_model import DTISprites
from dti_sprites.training.dead_layers import dead_layers, layer_areas, restart_layers
from dti_sprites.training.optim import build_optimizer
from dti_sprites.training.trainer import Trainer

from conftest import small_config


def _model(**model):
    cfg = small_config(model={"n_objects": 3, **model})
    return DTISprites(cfg["model"], (16, 16), 3, seed=0), cfg


def test_a_layer_below_the_threshold_of_the_mean_area_is_dead():
    assert dead_layers(torch.tensor([20.0, 16.0, 0.1]), torch.tensor([100.0, 100, 100]), 0.05) == [2]
    assert dead_layers(torch.tensor([20.0, 16.0, 5.0]), torch.tensor([100.0, 100, 100]), 0.05) == []
    # A layer that chose the empty sprite on every image was not drawn: not judged.
    assert dead_layers(torch.tensor([20.0, 16.0, 0.0]), torch.tensor([100.0, 100, 0]), 0.05) == []


def test_images_that_chose_the_empty_sprite_do_not_count():
    masks = torch.ones(2, 4, 1, 3, 3)
    masks[1, :2] = 0  # layer 1 draws nothing on the images where it chose the empty sprite (index 5)
    idx = torch.tensor([[0, 1, 2, 3], [5, 5, 1, 2]])
    area, drawn = layer_areas(masks, idx, empty_index=5)
    assert area.tolist() == [4.0, 2.0] and drawn.tolist() == [4.0, 2.0]


def test_restart_moves_the_dead_layer_behind_and_keeps_what_live_layers_compute():
    model, cfg = _model()
    optimizer = build_optimizer(model, cfg["training"]["optimizer"])
    features = torch.randn(5, model.encoder(torch.zeros(1, 3, 16, 16)).shape[1])
    for t in model.transformers():  # heads that predict something other than the identity
        for bank in t.heads:
            if bank is not None:
                torch.nn.init.normal_(bank.last_weight, std=0.1)
                torch.nn.init.normal_(bank.last_bias, std=0.1)
    model(torch.rand(4, 3, 16, 16)).loss.mean().backward()
    optimizer.step()  # every tensor has moments
    before = model.predict(features)
    exp_avg_sq = optimizer.state[model.layer_transformer.heads[1].last_bias]["exp_avg_sq"].clone()

    order = restart_layers(model, [2], optimizer)

    assert order == [2, 0, 1]
    after = model.predict(features)
    K = model.K
    for b_before, b_after in zip(before["layer"] + before["sprite"], after["layer"] + after["sprite"]):
        if b_before is None:
            continue
        per_layer = b_before.shape[0] // model.L  # 1 for the layer transformer, K for the sprite one
        live_before, live_after = b_before[: 2 * per_layer], b_after[per_layer:]
        # Old layers 0, 1 are now layers 1, 2 (same weights; the batched product may round differently).
        assert torch.allclose(live_before, live_after, atol=1e-6)
    position = after["layer"][1][0]  # the restarted layer: β = 0, the identity placement
    assert torch.equal(position, torch.zeros_like(position))
    assert torch.equal(after["sprite"][1][:K], torch.zeros_like(after["sprite"][1][:K]))
    state = optimizer.state[model.layer_transformer.heads[1].last_bias]
    assert torch.equal(state["exp_avg"][0], torch.zeros_like(state["exp_avg"][0]))
    # Its second moments are the live layers' mean, not zero (zero would make Adam's steps huge).
    assert torch.allclose(state["exp_avg_sq"][0], exp_avg_sq[:2].mean(0))


def test_training_brings_back_a_layer_sent_off_the_image(tetro_dir, tmp_path):
    cfg = small_config(
        model={"n_objects": 3},
        dataset={"path": str(tetro_dir)},
        training={"n_iterations": 4, "check_cluster_interval": 2, "val_stat_interval": 100},
    )
    trainer = Trainer(cfg, "cpu", tmp_path, tag="t", progress=False, quiet=True)
    position = trainer.model.layer_transformer.heads[1]  # color_position: module 1 places the layer
    with torch.no_grad():
        position.last_bias[2] = torch.tensor([0.0, 50.0, 50.0])  # layer 2 drawn far off the image
    trainer.run()
    log = (trainer.run_dir / "train.log").read_text()
    assert "layers [2] drew nothing" in log
    assert float(position.last_bias.detach()[:, 1:].abs().max()) < 5  # nothing is 50 image widths away any more
