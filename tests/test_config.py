"""Config loading: shipped values, defaults, and one clear error per mistake."""

from pathlib import Path

import pytest

from dti_sprites.config import validate
from dti_sprites.config_files import load_config
from dti_sprites.errors import ConfigError

CONFIGS = Path(__file__).resolve().parents[1] / "configs"


def base():
    return {
        "dataset": {"name": "tetrominoes"},
        "model": {"n_sprites": 3},
        "training": {"n_epoches": 1, "optimizer": {"lr": 1e-3}},
    }


def test_tetro_config_has_the_original_values():
    cfg = load_config(CONFIGS / "tetro.yml")
    m, t = cfg["model"], cfg["training"]
    assert (m["n_sprites"], m["n_objects"], m["n_backgrounds"]) == (19, 3, 0)
    assert (m["encoder_name"], m["sprite_size"], m["gaussian_weights_std"]) == ("resnet32", [24, 24], 5.0)
    assert (m["transformation_sequence"], m["transformation_sequence_layer"]) == ("identity", "color_position")
    assert m["estimate_minimum"] and m["greedy_algo_iter"] == 1 and m["freeze_sprite"] == 1
    assert m["inject_noise"] == 0.4
    assert t["optimizer"]["lr"] == 1e-4 and t["optimizer"]["transformer"] == {"weight_decay": 1e-6}
    assert t["scheduler"]["gamma"] == [1.0, 0.1] and t["scheduler"]["milestones"] == [100, 200]
    assert (t["n_epoches"], t["batch_size"]) == (210, 32)
    assert (t["train_stat_interval"], t["val_stat_interval"], t["check_cluster_interval"]) == (500, 1000, 50)


def test_every_shipped_config_loads():
    names = sorted(p.name for p in CONFIGS.glob("*.yml"))
    assert "tetro.yml" in names and "tetro_demo.yml" in names
    for name in names:
        load_config(CONFIGS / name)


def test_defaults_are_filled_in():
    cfg = validate(base())
    assert cfg["model"]["use_clamp"] == "soft" and cfg["model"]["n_hidden_layers"] == 2
    assert cfg["training"]["scheduler"]["name"] == "constant_lr"


@pytest.mark.parametrize(
    "edit, needle",
    [
        (lambda c: c["model"].update(n_sprite=3), "model.n_sprite: unknown key"),
        (lambda c: c.update(extra={}), "extra: unknown config section"),
        (lambda c: c["model"].update(n_sprites="many"), "model.n_sprites: expected"),
        (lambda c: c["model"].update(n_sprites=0), "model.n_sprites: expected a positive number"),
        (lambda c: c["model"].update(use_clamp="fuzzy"), None),
        (lambda c: c["model"].pop("n_sprites"), "model.n_sprites: missing"),
        (lambda c: c["training"].update(n_iterations=5), "exactly one"),
        (lambda c: c["training"].update(reassign_until=1.5), "training.reassign_until: expected a fraction"),
        (
            lambda c: c["training"].update(scheduler={"name": "multi_step", "gamma": [1, 0.1, 2]}),
            "training.scheduler.gamma",
        ),
        (lambda c: c["training"].update(scheduler={"name": "step_lr"}), "training.scheduler.name"),
        (
            lambda c: c["model"].update(transformation_sequence="color_affine", curriculum_learning=[1, 2]),
            "model.curriculum_learning: expected 1 milestone",
        ),
        (lambda c: c["model"].update(with_pool=[2]), "model.with_pool"),
        (lambda c: c["training"]["optimizer"].update(momentum=0.9), "training.optimizer.momentum: unknown key"),
        (lambda c: c["training"]["optimizer"].update(transformer={"lr": "fast"}), "training.optimizer.transformer.lr"),
        (lambda c: c["training"].update(compile="fast"), "training.compile: expected true, false or a mode"),
    ],
)
def test_bad_values_name_the_key(edit, needle):
    cfg = base()
    edit(cfg)
    if needle is None:  # checked where the value is used
        from dti_sprites.model.clamp import get_clamp

        with pytest.raises(ConfigError, match="model.use_clamp"):
            get_clamp(validate(cfg)["model"]["use_clamp"])
        return
    with pytest.raises(ConfigError, match=needle.replace("[", r"\[").replace(".", r"\.")):
        validate(cfg)


def test_yaml_quirks_and_overrides(tmp_path):
    path = tmp_path / "c.yml"
    path.write_text(
        "dataset: {name: tetrominoes}\nmodel: {n_sprites: 3}\ntraining: {n_epoches: 1, optimizer: {lr: 1e-4}}\n"
    )
    cfg = load_config(path, ["training.batch_size=7", "model.sprite_size=[8, 8]"])
    assert cfg["training"]["optimizer"]["lr"] == 1e-4  # YAML 1.1 reads 1e-4 as a string
    assert cfg["training"]["batch_size"] == 7 and cfg["model"]["sprite_size"] == [8, 8]


def test_yaml_that_builds_python_objects_is_refused(tmp_path):
    marker = tmp_path / "pwned"
    path = tmp_path / "evil.yml"
    path.write_text(f"dataset: !!python/object/apply:os.system ['touch {marker}']\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(path)
    assert not marker.exists()


def test_missing_config_file():
    with pytest.raises(ConfigError, match="nope.yml not found"):
        load_config("nope.yml")


def test_yaml_syntax_error_names_line_and_column(tmp_path):
    path = tmp_path / "broken.yml"
    path.write_text("dataset: {name: tetrominoes}\nmodel:\n  n_sprites: 3\n   n_objects: 2\n")
    with pytest.raises(ConfigError) as err:
        load_config(path)
    message = str(err.value)
    assert "line 4, column 13" in message and "tags" not in message and "\n" not in message


def test_override_of_one_training_length_clears_the_other(tmp_path):
    path = tmp_path / "epochs.yml"
    path.write_text("dataset: {name: tetrominoes}\nmodel: {n_sprites: 3}\ntraining: {n_epoches: 5}\n")
    cfg = load_config(path, ["training.n_iterations=30"])
    assert (cfg["training"]["n_iterations"], cfg["training"]["n_epoches"]) == (30, None)
    cfg = load_config(path, ["training.n_iterations=30", "training.n_epoches=2"])  # the last one wins
    assert (cfg["training"]["n_iterations"], cfg["training"]["n_epoches"]) == (None, 2)
    with pytest.raises(ConfigError, match=r"--set training\.n_epoches=null"):
        validate({**base(), "training": {"n_epoches": 1, "n_iterations": 5}})


def test_a_config_says_only_what_differs_from_its_base(tmp_path):
    (tmp_path / "parent.yml").write_text(
        "dataset: {name: tetrominoes}\nmodel: {n_sprites: 5, sprite_size: [8, 8]}\n"
        "training: {n_epoches: 4, batch_size: 4, optimizer: {lr: 1.0e-3, transformer: {weight_decay: 1.0e-6}},"
        " scheduler: {name: multi_step, milestones: [2, 3]}}\n"
    )
    (tmp_path / "child.yml").write_text(
        "base: parent.yml\nmodel: {sprite_size: [6, 6]}\n"
        "training: {n_iterations: 9, optimizer: {transformer: {lr: 1.0e-4}}, scheduler: {milestones: [1]}}\n"
    )
    cfg = load_config(tmp_path / "child.yml")
    m, t = cfg["model"], cfg["training"]
    assert (m["n_sprites"], m["sprite_size"]) == (5, [6, 6])  # inherited; replaced
    assert t["optimizer"]["transformer"] == {"weight_decay": 1e-6, "lr": 1e-4}  # mappings merge key by key
    assert t["scheduler"]["milestones"] == [1] and t["batch_size"] == 4  # a list replaces the base's whole
    assert (t["n_iterations"], t["n_epoches"]) == (9, None)  # counting iterations drops the base's epochs


def test_shipped_cpu_configs_inherit_the_paper_values():
    demo, paper = load_config(CONFIGS / "tetro_demo.yml"), load_config(CONFIGS / "tetro.yml")
    assert demo["model"]["n_sprites"] == paper["model"]["n_sprites"] == 19
    assert demo["model"]["encoder_name"] == "resnet20_s2" and paper["model"]["encoder_name"] == "resnet32"
    assert demo["training"]["scheduler"]["gamma"] == paper["training"]["scheduler"]["gamma"]
    fitted = load_config(CONFIGS / "dsprites_cpu.yml")
    assert fitted["training"]["optimizer"]["encoder_steps_per_iter"] == 7 and fitted["model"]["n_sprites"] == 12


def test_a_copied_config_finds_its_base_among_the_shipped_ones(tmp_path):
    (tmp_path / "mine.yml").write_text("base: tetro_demo.yml\ntraining: {seed: 7}\n")
    cfg = load_config(tmp_path / "mine.yml")
    assert cfg["training"]["seed"] == 7 and cfg["model"]["encoder_name"] == "resnet20_s2"


@pytest.mark.parametrize(
    "files, needle",
    [
        ({"a.yml": "base: missing.yml\n"}, "a.yml: base: missing.yml not found beside it"),
        ({"a.yml": "base: [x]\n"}, "base: expected the file name of another config"),
        ({"a.yml": "base: b.yml\n", "b.yml": "base: a.yml\n"}, "the bases form a loop (a.yml -> b.yml -> a.yml)"),
    ],
)
def test_bad_base_is_named(tmp_path, files, needle):
    for name, text in files.items():
        (tmp_path / name).write_text(text)
    with pytest.raises(ConfigError) as err:
        load_config(tmp_path / "a.yml")
    assert needle in str(err.value)
