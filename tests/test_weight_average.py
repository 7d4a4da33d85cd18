"""Weight averaging (`training.average_weights_from`): the final model is the mean of the
weights seen since averaging began, and a stopped run resumes to the same mean."""

import torch

from dti_sprites.training.trainer import Trainer
from dti_sprites.training.weight_average import WeightAverage

from conftest import assert_same_state, small_config


def test_the_mean_of_the_weights_replaces_them_and_a_restart_begins_again():
    model = torch.nn.Sequential(torch.nn.Linear(2, 2), torch.nn.BatchNorm1d(2))
    average = WeightAverage(model)
    for value in (1.0, 2.0, 6.0):
        with torch.no_grad():
            model[0].weight.fill_(value)
            model[1].num_batches_tracked.fill_(int(value))
        average.update()
    average.copy_into_model()
    assert torch.equal(model[0].weight, torch.full((2, 2), 3.0))
    assert int(model[1].num_batches_tracked) == 6  # a counter is the last step's, not a mean
    with torch.no_grad():
        model[0].weight.fill_(10.0)
    average.restart()
    average.update()
    with torch.no_grad():
        model[0].weight.fill_(20.0)
    average.update()
    average.copy_into_model()
    assert torch.equal(model[0].weight, torch.full((2, 2), 15.0))


def _config(tetro_dir, **training):
    return small_config(
        model={"reassign_cluster": False},  # a restart would begin the mean again (tested above)
        dataset={"path": str(tetro_dir)},
        training={"n_iterations": 6, "average_weights_from": 0.5, **training},
    )


def test_the_final_model_is_the_mean_of_the_last_half(tetro_dir, tmp_path):
    trainer = Trainer(_config(tetro_dir), "cpu", tmp_path, progress=False, quiet=True)
    seen = []
    step = trainer.train_step

    def recording_step(images):
        result = step(images)
        state = trainer.model.state_dict().items()
        seen.append({k: v.clone() for k, v in state if isinstance(v, torch.Tensor) and v.is_floating_point()})
        return result

    trainer.train_step = recording_step
    trainer.run()
    assert len(seen) == 6
    final = trainer.model.state_dict()
    for name in seen[0]:
        expected = torch.stack([s[name] for s in seen[3:]]).mean(0)  # iterations 4-6
        assert torch.allclose(final[name], expected, atol=1e-6), name
    assert not torch.allclose(final["prototypes"], seen[-1]["prototypes"])


def test_a_run_stopped_while_averaging_resumes_to_the_same_mean(tetro_dir, tmp_path):
    straight = Trainer(_config(tetro_dir), "cpu", tmp_path / "a", progress=False, quiet=True)
    straight.run()
    first = Trainer(_config(tetro_dir), "cpu", tmp_path / "b", progress=False, quiet=True)
    assert first.run(max_iterations=5) is None  # two steps into the average
    resumed = Trainer(_config(tetro_dir, resume=str(first.run_dir)), "cpu", tmp_path / "b", progress=False, quiet=True)
    assert resumed.weight_average.count == 2
    resumed.run()
    assert_same_state(straight.model.state_dict(), resumed.model.state_dict())


def test_a_run_resumed_with_averaging_off_ends_on_its_trained_weights(tetro_dir, tmp_path):
    first = Trainer(_config(tetro_dir), "cpu", tmp_path, progress=False, quiet=True)
    first.run(max_iterations=5)
    off = _config(tetro_dir, resume=str(first.run_dir), average_weights_from=None)
    resumed = Trainer(off, "cpu", tmp_path, progress=False, quiet=True)
    assert resumed.weight_average is None
    seen = []
    step = resumed.train_step

    def recording_step(images):
        result = step(images)
        seen.append(resumed.model.prototypes.detach().clone())
        return result

    resumed.train_step = recording_step
    resumed.run()
    assert torch.equal(resumed.model.prototypes, seen[-1])
