"""Configs from dicts, files and overrides, every value checked against its field's type."""

from __future__ import annotations

import dataclasses
import json
import typing
from dataclasses import fields, is_dataclass
from pathlib import Path
from typing import Any, Literal, TypeVar

from lth.errors import ConfigError

T = TypeVar("T")


# --------------------------------------------------------------------------------------------------------
# dict round trip with type checks, overrides, files

def to_dict(cfg: Any) -> dict[str, Any]:
    """Plain JSON-able dict (tuples become lists)."""
    return json.loads(json.dumps(dataclasses.asdict(cfg)))


_RENAMED = {("prune", "score"): "criterion"}
"""Keys of earlier versions read under their new names (a config.json or YAML file written for lth 0.1)."""
_MOVED = {("train", "amp"): ("compute", "amp")}
"""Keys of earlier versions read in the section they moved to."""


def _type_name(tp: Any) -> str:
    origin = typing.get_origin(tp)
    if origin is Literal:
        return " | ".join(map(str, typing.get_args(tp)))
    if origin in (typing.Union, getattr(__import__("types"), "UnionType", None)):
        return " or ".join(_type_name(a) for a in typing.get_args(tp))
    if origin is tuple:
        return f"a list ({_type_name(typing.get_args(tp)[0])} each)"
    return {int: "a whole number", float: "a number", str: "a string", bool: "true or false",
            type(None): "null"}.get(tp, getattr(tp, "__name__", str(tp)))


def _check_value(value: Any, tp: Any, key: str) -> Any:
    """`value` as type `tp`, or a ConfigError naming the key, the expected type and the value."""
    origin = typing.get_origin(tp)
    bad = ConfigError(f"config key {key} must be {_type_name(tp)}, got {value!r}")
    if origin in (typing.Union, getattr(__import__("types"), "UnionType", None)):
        for option in typing.get_args(tp):
            try:
                return _check_value(value, option, key)
            except ConfigError:
                continue
        raise bad
    if origin is Literal:
        if value in typing.get_args(tp) and type(value) is not bool:
            return value
        raise ConfigError(f"config key {key} must be one of {', '.join(map(str, typing.get_args(tp)))}; "
                          f"got {value!r}")
    if origin is tuple:
        items = value if isinstance(value, (list, tuple)) else [value]
        return tuple(_check_value(v, typing.get_args(tp)[0], key) for v in items)
    if tp is type(None):
        if value is None:
            return None
        raise bad
    if tp is bool:
        if isinstance(value, bool):
            return value
        raise bad
    if tp is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        if isinstance(value, float) and value.is_integer():
            return int(value)
        raise bad
    if tp is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        if isinstance(value, str):  # YAML reads 1e-3 (no dot) as a string
            try:
                return float(value)
            except ValueError:
                raise bad from None
        raise bad
    if tp is str:
        if isinstance(value, str):
            return value
        raise bad
    return value


def check_types(cfg: Any, where: str = "") -> None:
    """Refuse a config whose values do not have their fields' types, naming the key: a config built in Python
    (`TrainConfig(lr="abc")`, `ImpConfig(seed=1.7)`) gets the same checks as flags and files. A whole number
    where a number is expected is fine; anything that would need converting is not."""
    hints = typing.get_type_hints(type(cfg))
    for f in fields(cfg):
        value = getattr(cfg, f.name)
        if is_dataclass(value):
            check_types(value, f"{where}{f.name}.")
        elif not _unconverted(_check_value(value, hints[f.name], where + f.name), value):
            raise ConfigError(f"config key {where}{f.name} must be {_type_name(hints[f.name])}, got {value!r}")


def _unconverted(checked: Any, value: Any) -> bool:
    """Whether `value` already is what _check_value made of it (an int standing for a float counts)."""
    if isinstance(checked, tuple) and isinstance(value, tuple):
        return len(checked) == len(value) and all(map(_unconverted, checked, value))
    return type(checked) is type(value) or (type(checked) is float and type(value) is int)


def from_dict(cls: type[T], data: dict[str, Any], *, base: T | None = None, where: str = "") -> T:
    """Build `cls` from a (possibly partial) nested dict, on top of `base`, checking every value's type.

    Unknown keys are an error that names the key and the known ones: a typo in a YAML file must not be
    silently ignored. Keys of earlier versions are read under their new names.
    """
    if not isinstance(data, dict):
        raise ConfigError(f"config {where.rstrip('.') or 'file'} must be a mapping, got {data!r}")
    base = base if base is not None else cls()
    data = dict(data)
    section = where.rstrip(".")
    for (sec, old), new in _RENAMED.items():
        if sec == section and old in data and new not in data:
            data[new] = data.pop(old)
    if not section:
        for (sec, old), (to, new) in _MOVED.items():
            if (isinstance(data.get(sec), dict) and old in data[sec] and to in {f.name for f in fields(cls)}
                    and isinstance(data.get(to) or {}, dict)):  # else the section check below names `to`
                value = data[sec][old]
                data[sec] = {k: v for k, v in data[sec].items() if k != old}
                data[to] = {new: value, **(data.get(to) or {})}
    bad_keys = [k for k in data if not isinstance(k, str)]
    if bad_keys:
        raise ConfigError(f"config keys must be names, got {bad_keys!r}{' in ' + section if section else ''}")
    known = {f.name: f for f in fields(cls)}
    unknown = sorted(set(data) - set(known))
    if unknown:
        raise ConfigError(
            f"unknown config key(s) {', '.join(where + k for k in unknown)}; "
            f"known keys{' in ' + section if section else ''}: {', '.join(sorted(known))}"
        )
    hints = typing.get_type_hints(cls)
    changes: dict[str, Any] = {}
    for name, value in data.items():
        current = getattr(base, name)
        if is_dataclass(current):
            if not isinstance(value, dict):
                raise ConfigError(f"config key {where}{name} is a section and must be a mapping of its keys "
                                  f"(e.g. {name}: {{...}}), got {value!r}")
            changes[name] = from_dict(type(current), value, base=current, where=f"{where}{name}.")
        else:
            changes[name] = _check_value(value, hints[name], where + name)
    return dataclasses.replace(base, **changes)


def _nest(changes: dict[Any, Any]) -> dict[str, Any]:
    nested: dict[str, Any] = {}
    for key, value in changes.items():
        if not isinstance(key, str) or not key:
            raise ConfigError(f"override keys are dotted names such as 'train.lr', got {key!r}")
        *parents, leaf = key.split(".")
        node = nested
        for p in parents:
            child = node.setdefault(p, {})
            if not isinstance(child, dict):
                raise ConfigError(f"override key {key!r}: {p} is not a section")
            node = child
        if isinstance(value, dict) and isinstance(node.get(leaf), dict):
            node[leaf].update(value)
        else:
            node[leaf] = value
    return nested


def override(cfg: T, changes: dict[str, Any]) -> T:
    """`cfg` with changes given as dotted keys or nested dicts: override(cfg, {"train.lr": 1e-3}).

    Values are checked like values from a config file; the result's sections are checked as well."""
    if not isinstance(changes, dict):
        raise ConfigError(f"override takes a dict of changes such as {{'train.lr': 1e-3}}, got {changes!r}")
    out = from_dict(type(cfg), _nest(changes), base=cfg)
    if hasattr(out, "check"):
        out.check()
    return out


def load_file(path: str | Path) -> dict[str, Any]:
    """Read a YAML or JSON config file into a dict; every problem is a ConfigError naming the file."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"config file {path} does not exist (or is not a file); check the --config path")
    try:
        text = path.read_text()
    except (OSError, UnicodeDecodeError) as e:
        raise ConfigError(f"config file {path} cannot be read: {e}") from None
    if path.suffix == ".json":
        try:
            data = json.loads(text)
        except json.JSONDecodeError as e:
            raise ConfigError(f"config file {path} is not valid JSON: {e.msg} at line {e.lineno}, column "
                              f"{e.colno}") from None
    else:
        import yaml

        try:
            data = yaml.safe_load(text)
        except yaml.YAMLError as e:
            where = getattr(e, "problem_mark", None)
            at = f" at line {where.line + 1}, column {where.column + 1}" if where else ""
            problem = getattr(e, "problem", None) or str(e).splitlines()[0]
            raise ConfigError(f"config file {path} is not valid YAML{at}: {problem} (only plain values, "
                              "lists and mappings are read; no !!python tags)") from None
        data = data or {}
    if not isinstance(data, dict):
        raise ConfigError(f"config file {path} must hold a mapping at the top level (e.g. 'train: {{lr: "
                          f"0.001}}'), got {type(data).__name__}")
    return data
