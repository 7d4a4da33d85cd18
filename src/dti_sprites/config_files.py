"""Config files: finding them, reading YAML safely, laying a config over its `base:`, applying
`--set` overrides, and writing a run's resolved config. What the keys mean is config.py's."""

from __future__ import annotations

from pathlib import Path

import yaml

from .config import validate
from .errors import ConfigError

SHIPPED_CONFIGS = Path(__file__).resolve().parents[2] / "configs"  # the repository's configs/


def resolve_config(name: str) -> Path:
    """A path as given, else a file of the repository's configs/ folder."""
    path = Path(name)
    if path.is_file():
        return path
    for folder in (Path("configs"), SHIPPED_CONFIGS):
        if (folder / name).is_file():
            return folder / name
    raise ConfigError(f"config file {name} not found (looked as given and in {SHIPPED_CONFIGS})")


def load_config(path: str | Path, overrides: list[str] | None = None) -> dict:
    """Read a YAML file safely (no Python tags), apply `section.key=value` overrides, validate."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"config file {path} not found")
    raw = read_config_file(path)
    for item in overrides or []:
        apply_override(raw, item)
    return validate(raw)


def read_config_file(path: Path, chain: tuple[Path, ...] = ()) -> dict:
    """The raw mapping of one config file, laid over the config its `base:` key names.

    A config that differs from another in a few values (a CPU fit of a paper config) says
    only those values, so the two cannot drift apart. `base` names a file beside this one,
    else one of the shipped configs; bases may chain. Mappings merge key by key; any other
    value, a list included, replaces the base's.
    """
    try:
        raw = yaml.safe_load(path.read_text())
    except yaml.YAMLError as err:
        raise ConfigError(f"config file {path} is not valid YAML: {yaml_problem(err)}") from None
    raw = {} if raw is None else raw
    if not isinstance(raw, dict) or "base" not in raw:
        return raw
    raw = dict(raw)
    name = raw.pop("base")
    if not isinstance(name, str) or not name:
        raise ConfigError(f"{path}: base: expected the file name of another config, got {name!r}")
    base_path = next((p for p in (path.parent / name, SHIPPED_CONFIGS / name) if p.is_file()), None)
    if base_path is None:
        raise ConfigError(f"{path}: base: {name} not found beside it or in {SHIPPED_CONFIGS}")
    chain = chain + (path.resolve(),)
    if base_path.resolve() in chain:
        names = " -> ".join(p.name for p in chain + (base_path.resolve(),))
        raise ConfigError(f"{path}: base: the bases form a loop ({names})")
    return lay_over(read_config_file(base_path, chain), raw)


def lay_over(base: dict, over: dict, where: tuple[str, ...] = ()) -> dict:
    """`over` laid on `base`, in place (both are fresh from YAML): mappings merge key by key,
    every other value replaces, and a key set here clears its exclusive partner."""
    for key, value in over.items():
        if isinstance(value, dict) and isinstance(base.get(key), dict):
            lay_over(base[key], value, (*where, key))
        else:
            base[key] = value
    clear_partners(base, over, where)
    return base


# Keys of which a config sets exactly one: setting one (on the command line, or over a base) clears the other.
EXCLUSIVE_KEYS = {("training", "n_epoches"): "n_iterations", ("training", "n_iterations"): "n_epoches"}


def clear_partners(section: dict, given: dict, where: tuple[str, ...]) -> None:
    """Clear in `section` the partner of each key `given` sets (not to None) without its partner:
    a config that counts iterations drops the epochs it would otherwise inherit."""
    for key, value in given.items():
        other = EXCLUSIVE_KEYS.get((*where, key))
        if other is not None and value is not None and other not in given:
            section[other] = None


def yaml_problem(err: yaml.YAMLError) -> str:
    """PyYAML's problem and where it is (line, column), in one line."""
    if isinstance(err, yaml.constructor.ConstructorError):  # a tag such as !!python/object
        return f"{err.problem} (tags that build Python objects are refused){_where(err.problem_mark)}"
    if isinstance(err, yaml.MarkedYAMLError) and err.problem:
        return f"{err.problem}{_where(err.problem_mark or err.context_mark)}"
    return (str(err).splitlines() or [type(err).__name__])[0]


def _where(mark) -> str:
    return f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""


def apply_override(raw: dict, item: str) -> None:
    """Set `training.optimizer.lr=1e-3` style overrides; the value is parsed as YAML.

    Setting training.n_epoches (or n_iterations) to a value also clears the other, so that
    `--set training.n_iterations=30` works on a config that counts epochs.
    """
    if "=" not in item:
        raise ConfigError(f"override {item!r}: expected section.key=value")
    dotted, value = item.split("=", 1)
    parts = dotted.strip().split(".")
    if len(parts) < 2:
        raise ConfigError(f"override {item!r}: expected section.key=value (e.g. training.batch_size=16)")
    node = raw
    for part in parts[:-1]:
        node = node.setdefault(part, {})
        if not isinstance(node, dict):
            raise ConfigError(f"override {item!r}: {part} is not a section")
    try:
        node[parts[-1]] = yaml.safe_load(value)
    except yaml.YAMLError as err:
        raise ConfigError(f"override {item!r}: the value is not valid YAML: {yaml_problem(err)}") from None
    clear_partners(node, {parts[-1]: node[parts[-1]]}, tuple(parts[:-1]))


def save_config(cfg: dict, path: str | Path) -> None:
    Path(path).write_text(yaml.safe_dump(cfg, sort_keys=False))
