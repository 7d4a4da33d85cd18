"""Live monitoring: a real visdom server on localhost (its page loaded in headless Chromium),
TensorBoard event files, and training that goes on when a backend is missing or unreachable."""

import json
import logging
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request

import pytest
import torch

from dti_sprites.cli import main as cli_main
from dti_sprites.errors import DTISpritesError
from dti_sprites.monitoring import MonitorGroup, build_monitor
from dti_sprites.monitoring.visdom_monitor import VisdomMonitor, connect_visdom, env_name
from dti_sprites.monitoring.visdom_server import PAGE_FILES, assemble_page
from dti_sprites.training.trainer import Trainer

from conftest import small_config

SERVER_START_TIMEOUT_S = 60  # importing visdom (it imports torch) takes ~10 s on a busy 2-core machine
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
# visdom 0.2.4 itself calls deprecated APIs; not ours to fix.
pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _train(tetro_dir, runs, **training):
    cfg = small_config(
        training={"n_iterations": 3, "val_stat_interval": 3, **training}, dataset={"path": str(tetro_dir)}
    )
    trainer = Trainer(cfg, "cpu", runs, tag="mon", progress=False, quiet=True)
    trainer.run()
    return trainer


@pytest.fixture
def visdom_server(tmp_path):
    """Our launcher's visdom server on 127.0.0.1 (nothing downloaded: no network needed)."""
    port = _free_port()
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "dti_sprites",
            "visdom-server",
            "--port",
            str(port),
            "--host",
            "127.0.0.1",
            "--env-path",
            str(tmp_path / "visdom_env"),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
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
    client = visdom.Visdom(
        server="http://127.0.0.1", port=visdom_server, env=env, raise_exceptions=True, use_incoming_socket=False
    )
    for win in (
        "train_loss",
        "train_time_per_img_ms",
        "train_lr",
        "proportions",
        "val",
        "val_loss",
        "final",
        "final_loss",
        "sprites",
        "masks",
        "masked_sprites",
        "backgrounds",
        "transformed_sprites",
        "reconstructions",
    ):
        assert client.win_exists(win, env=env), win
    assert not client.win_exists("train", env=env)  # loss, ms and lr do not share one linear axis
    loss = json.loads(client.get_window_data("train_loss", env=env))["content"]["data"]
    assert [trace["name"] for trace in loss] == ["loss"]
    assert loss[0]["x"] == [2]  # train_stat_interval 2, 3 iterations: one point
    lr = json.loads(client.get_window_data("train_lr", env=env))["content"]
    assert lr["layout"]["yaxis"]["type"] == "log"
    val = json.loads(client.get_window_data("val", env=env))["content"]["data"]
    assert "loss" not in {trace["name"] for trace in val} and "ari" in {trace["name"] for trace in val}
    sprites = json.loads(client.get_window_data("sprites", env=env))
    assert sprites["content"]["src"].startswith("data:image/png;base64,")
    log = (trainer.run_dir / "train.log").read_text()
    assert f"visdom: live plots at http://localhost:{visdom_server}/env/{env}" in log


def test_assembled_page_holds_every_file_visdoms_index_loads(tmp_path):
    page = assemble_page(tmp_path / "page")
    wanted = re.findall(r"static_url\(\s*['\"]([^'\"]+)['\"]\s*\)", (page / "index.html").read_text())
    assert len(wanted) >= 15  # the template still names its files this way
    missing = [name for name in wanted if not name.startswith("../") and not (page / name).is_file()]
    assert not missing
    assert "plotly.js v2." in (page / "js" / "plotly-plotly.min.js").read_text()[:200]  # 3.x drops string titles
    assert (page / "fonts" / "glyphicons-halflings-regular.woff2").is_file()  # bootstrap.min.css loads it


def test_a_missing_page_package_is_named_with_its_pip_requirement(tmp_path, monkeypatch):
    monkeypatch.setitem(PAGE_FILES, "js/plotly-plotly.min.js", ("no_such_package_here", "plotly.min.js", "plotly<6"))
    with pytest.raises(DTISpritesError, match=r"no_such_package_here not found.*pip install 'plotly<6'"):
        assemble_page(tmp_path / "page")


def _chromium(*args: str) -> str:
    """Headless Chromium on a local page, no network of its own; returns its standard output."""
    with tempfile.TemporaryDirectory() as profile:
        done = subprocess.run(
            [
                CHROMIUM,
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-quic",
                "--no-first-run",
                "--no-proxy-server",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                f"--user-data-dir={profile}",
                "--virtual-time-budget=15000",
                "--window-size=1400,1000",
                *args,
            ],
            check=True,
            capture_output=True,
            timeout=120,
        )
    return done.stdout.decode()


@pytest.mark.skipif(CHROMIUM is None, reason="chromium is not installed")
def test_visdom_page_shows_the_windows_in_headless_chromium(visdom_server):
    import visdom

    env = "tetrominoes_0101_page"
    client = visdom.Visdom(
        server="http://127.0.0.1", port=visdom_server, env=env, raise_exceptions=True, use_incoming_socket=False
    )
    monitor = VisdomMonitor(client, env)
    for step in (2, 4):
        monitor.scalars(step, "train", {"loss": 0.1 / step, "time_per_img_ms": 16.0, "lr": 1e-3})
    monitor.images(4, {"sprites": (torch.rand(4, 3, 8, 8), 4)})
    assert not monitor.failed
    direct = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    with direct.open(f"http://127.0.0.1:{visdom_server}/", timeout=30) as reply:  # visdom's own server: 403
        assert reply.status == 200
    dom = _chromium("--dump-dom", f"http://127.0.0.1:{visdom_server}/env/{env}")
    for title in ("train: loss", "train: time_per_img_ms", "train: lr", "sprites (iteration 4)"):
        assert title in dom, title  # the window bars that visdom's React page drew
    assert dom.count('class="main-svg"') >= 3  # plotly.js drew the three curves
    assert 'class="content-image' in dom


def test_visdom_server_on_a_taken_port_is_one_line(tmp_path, capsys):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with pytest.raises(SystemExit) as stop:
            cli_main(["visdom-server", "--port", str(port), "--host", "127.0.0.1", "--env-path", str(tmp_path / "e")])
    assert stop.value.code == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and f"cannot listen on 127.0.0.1:{port}" in err and "--port" in err


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
