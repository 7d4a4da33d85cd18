"""Both image sources feed training the same pixels in the same order, and training
never makes the host wait for the device between logging intervals."""

from types import SimpleNamespace

import pytest
import torch

from dti_sprites.data import build_dataset
from dti_sprites.errors import ConfigError
from dti_sprites.op_census import OpCensus, _copy_waits
from dti_sprites.training import batches
from dti_sprites.training.batches import ResidentImages, StreamedImages, image_source
from dti_sprites.training.trainer import Trainer

from conftest import assert_same_state, small_config


def _trainer(tetro_dir, runs, **training):
    cfg = small_config(training={"n_iterations": 16, **training}, dataset={"path": str(tetro_dir)})
    return Trainer(cfg, "cpu", runs, tag="t", progress=False, quiet=True)


def test_streamed_batches_equal_resident_batches(tetro_dir):
    dataset = build_dataset(small_config(dataset={"path": str(tetro_dir)}), "train")[0]
    resident = ResidentImages(dataset, torch.device("cpu"), progress=False)
    streamed = StreamedImages(dataset, torch.device("cpu"), n_workers=2)
    chunks = list(torch.randperm(len(dataset), generator=torch.Generator().manual_seed(3))[:40].split(8))
    pairs = list(zip(resident.batches(chunks), streamed.batches(chunks), strict=True))
    assert len(pairs) == 5
    for a, b in pairs:
        assert a.dtype == b.dtype == torch.float32 and torch.equal(a, b)
    assert torch.equal(resident.batch(chunks[0]), streamed.batch(chunks[0]))


def test_streamed_training_and_resume_match_resident_training(tetro_dir, tmp_path):
    resident = _trainer(tetro_dir, tmp_path / "a", resident=True)
    resident.run(max_iterations=16)
    assert resident.epoch >= 1  # the comparison crosses an epoch boundary
    streamed = _trainer(tetro_dir, tmp_path / "b", resident=False, n_workers=1)
    assert isinstance(streamed.images, StreamedImages)
    assert streamed.run(max_iterations=7) is None  # stop mid-epoch, then resume from the checkpoint
    cfg = small_config(
        training={"n_iterations": 16, "resident": False, "resume": str(streamed.run_dir)},
        dataset={"path": str(tetro_dir)},
    )
    resumed = Trainer(cfg, "cpu", tmp_path / "b", progress=False, quiet=True)
    resumed.run(max_iterations=9)
    assert resumed.iteration == resident.iteration == 16
    assert_same_state(resident.model.state_dict(), resumed.model.state_dict())


def test_auto_keeps_images_resident_only_when_they_fit(tetro_dir, monkeypatch):
    dataset = build_dataset(small_config(dataset={"path": str(tetro_dir)}), "train")[0]
    cpu = torch.device("cpu")
    assert batches.resident_bytes(dataset) == len(dataset) * 3 * 35 * 35
    assert isinstance(image_source(dataset, cpu, "auto", 0, progress=False), ResidentImages)
    monkeypatch.setattr(batches, "RESIDENT_SHARE_OF_RAM", 1e-12)
    assert isinstance(image_source(dataset, cpu, "auto", 0, progress=False), StreamedImages)
    assert isinstance(image_source(dataset, cpu, True, 0, progress=False), ResidentImages)


def test_resident_key_is_checked():
    with pytest.raises(ConfigError, match="training.resident"):
        small_config(training={"resident": "sometimes"})


def test_training_iterations_never_wait_for_the_device(tetro_dir, tmp_path):
    """Between logging intervals the loop only queues work: no .item(), no boolean masks."""
    trainer = _trainer(tetro_dir, tmp_path, train_stat_interval=100, val_stat_interval=100, check_cluster_interval=100)
    trainer._loop(1, None)  # warm-up outside the census
    with OpCensus() as census:
        trainer._loop(3, None)
    assert trainer.iteration == 4
    assert census.n_ops > 300  # forward, backward and the optimiser were all seen
    assert census.ops["_fused_adam_"] == 3 * 2  # one fused update per parameter group
    assert census.n_syncs == 0, dict(census.syncs)


def test_census_sees_host_reads():
    x = torch.arange(6.0)
    with OpCensus() as census:
        x.sum().item()
        x[x > 2].sum()
        x[torch.tensor([0, 2])].sum()  # integer indices queue without a read-back
    assert dict(census.syncs) == {"_local_scalar_dense": 1, "index": 1}


def test_census_rules_for_copies_between_host_and_device():
    """Judged on device types alone, so the rules are checked without a GPU."""
    on = {kind: SimpleNamespace(device=torch.device(kind)) for kind in ("cpu", "cuda")}
    to_copy, copy_ = torch.ops.aten._to_copy.default, torch.ops.aten.copy_.default
    assert _copy_waits(to_copy, (on["cpu"],), {"device": torch.device("cuda")})  # blocking upload
    assert not _copy_waits(to_copy, (on["cpu"],), {"device": torch.device("cuda"), "non_blocking": True})
    assert _copy_waits(to_copy, (on["cuda"],), {"device": torch.device("cpu"), "non_blocking": True})  # download
    assert not _copy_waits(to_copy, (on["cuda"],), {"dtype": torch.float16})
    assert _copy_waits(copy_, (on["cpu"], on["cuda"]), {})
    assert not _copy_waits(copy_, (on["cuda"], on["cpu"], True), {})


def test_resident_batches_upload_indices_once(tetro_dir):
    dataset = build_dataset(small_config(dataset={"path": str(tetro_dir)}), "train")[0]
    resident = ResidentImages(dataset, torch.device("cpu"), progress=False)
    chunks = [torch.tensor([3, 1]), torch.tensor([0, 2, 5])]
    got = list(resident.batches(chunks))
    assert [b.shape[0] for b in got] == [2, 3] and torch.equal(got[1], resident.batch(chunks[1]))
    assert list(resident.batches([])) == []
