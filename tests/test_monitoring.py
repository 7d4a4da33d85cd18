"""Live monitoring: a real visdom server on localhost, TensorBoard event files, and training
that goes on when a backend is missing or unreachable."""

import json
import logging
import socket
import subprocess
import sys
import time

import pytest

from dti_sprites.monitoring import MonitorGroup, build_monitor
from dti_sprites.monitoring.visdom_monitor import connect_visdom, env_name
from dti_sprites.training.trainer import Trainer

from conftest import small_config

SERVER_START_TIMEOUT_S = 30
# visdom 0.2.4 itself calls deprecated APIs; not ours to fix.
pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _train(tetro_dir, runs, **training):
    cfg = small_config(training={"n_iterations": 3, "val_stat_interval": 3, **training},
                       dataset={"path": str(tetro_dir)})
    trainer = Trainer(cfg, "cpu", runs, tag="mon", progress=False, quiet=True)
    trainer.run()
    return trainer


@pytest.fixture
def visdom_server(tmp_path):
    """A visdom server on 127.0.0.1 (its web scripts are not fetched: no network needed)."""
    port = _free_port()
    # `python -m visdom.server` would first try to download the web page's scripts; main() skips that.
    proc = subprocess.Popen([sys.executable, "-c", "from visdom.server.run_server import main; main()",
                             "-port", str(port), "--hostname", "127.0.0.1", "-bind_local",
                             "-env_path", str(tmp_path / "visdom_env"), "-logging_level", "WARNING"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + SERVER_START_TIMEOUT_S
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                if proc.poll() is not None:
                    pytest.fail(f"visdom server exited: {proc.stderr.read().decode()[-500:]}")
                if time.monotonic() > deadline:
                    pytest.fail(f"visdom server did not answer on port {port} within {SERVER_START_TIMEOUT_S} s")
                time.sleep(0.2)
        yield port
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)


def test_visdom_gets_curves_and_images(tetro_dir, tmp_path, visdom_server):
    import visdom

    trainer = _train(tetro_dir, tmp_path, visualizer_port=visdom_server)
    env = env_name(trainer.run_dir)
    assert env == f"tetrominoes_{trainer.run_dir.name}"
    client = visdom.Visdom(server="http://127.0.0.1", port=visdom_server, env=env, raise_exceptions=True,
                           use_incoming_socket=False)
    for win in ("train", "proportions", "val", "final", "sprites", "masks", "masked_sprites", "backgrounds",
                "transformed_sprites", "reconstructions"):
        assert client.win_exists(win, env=env), win
    train = json.loads(client.get_window_data("train", env=env))
    names = sorted(trace["name"] for trace in train["content"]["data"])
    assert names == ["loss", "lr", "time_per_img_ms"]
    loss = next(trace for trace in train["content"]["data"] if trace["name"] == "loss")
    assert loss["x"] == [2]  # train_stat_interval 2, 3 iterations: one point
    sprites = json.loads(client.get_window_data("sprites", env=env))
    assert sprites["content"]["src"].startswith("data:image/png;base64,")
    assert "visdom: live plots at" in (trainer.run_dir / "train.log").read_text()


def test_unreachable_visdom_warns_once_and_training_goes_on(tetro_dir, tmp_path):
    trainer = _train(tetro_dir, tmp_path, visualizer_port=_free_port())
    log = (trainer.run_dir / "train.log").read_text()
    warnings = [line for line in log.splitlines() if "visdom: no server answers" in line]
    assert len(warnings) == 1 and "training goes on" in warnings[0]
    assert (trainer.run_dir / "final_scores.json").is_file()


class _Collect(logging.Handler):
    def __init__(self):
        super().__init__()
        self.lines = []

    def emit(self, record):
        self.lines.append(record.getMessage())


def test_missing_visdom_package_is_a_warning(monkeypatch, tmp_path):
    monkeypatch.setitem(sys.modules, "visdom", None)  # import visdom -> ImportError
    handler = _Collect()
    logger = logging.getLogger("dti_sprites.monitoring")
    logger.addHandler(handler)
    try:
        assert connect_visdom(8097, tmp_path / "run") is None
    finally:
        logger.removeHandler(handler)
    assert len(handler.lines) == 1 and "cannot import it" in handler.lines[0]


def test_build_monitor_picks_the_backends(tmp_path):
    cfg = small_config()
    assert isinstance(build_monitor(cfg, tmp_path), MonitorGroup) and not build_monitor(cfg, tmp_path).monitors
    cfg["training"]["tensorboard"] = True
    monitors = build_monitor(cfg, tmp_path).monitors
    assert [type(m).__name__ for m in monitors] == ["TensorboardMonitor"]
    monitors[0].close()


def test_tensorboard_event_files(tetro_dir, tmp_path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    trainer = _train(tetro_dir, tmp_path, tensorboard=True)
    events = EventAccumulator(str(trainer.run_dir / "tensorboard"), size_guidance={"images": 0, "scalars": 0})
    events.Reload()
    tags = events.Tags()
    assert {"train/loss", "train/lr", "proportions/0", "val/loss", "val/ari", "final/ari"} <= set(tags["scalars"])
    assert {"sprites", "masks", "transformed_sprites", "reconstructions"} <= set(tags["images"])
    assert [e.step for e in events.Scalars("train/loss")] == [2]
    sprites = events.Images("sprites")[-1]
    assert sprites.step == 3 and sprites.width > 0 and sprites.encoded_image_string.startswith(b"\x89PNG")
