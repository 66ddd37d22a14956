"""Typed configuration: frozen dataclasses loaded from YAML, with ``key=value`` overrides.

Configs are data. Each module owns the dataclass for its own settings (``FeatureConfig`` in
``asr.features``, ``ModelConfig`` in ``asr.model``...); this module only converts between plain
dictionaries and those dataclasses, rejecting unknown keys so a typo never passes silently.

Example:
    >>> from dataclasses import dataclass
    >>> @dataclass(frozen=True)
    ... class Opt:
    ...     lr: float = 0.1
    ...     steps: int = 10
    >>> config_from_dict(Opt, apply_overrides({"lr": 0.1}, ["steps=20"]))
    Opt(lr=0.1, steps=20)
"""

from __future__ import annotations

import dataclasses
import functools
import math
import numbers
import os
import re
import types
import typing
from collections.abc import Mapping
from pathlib import Path
from typing import Any, TypeVar

import yaml

T = TypeVar("T")


class ConfigError(ValueError):
    """A configuration file or override is malformed: unknown key, wrong type, bad syntax.

    Attributes:
        key: the dotted key the error is about (``"optim.lr"``), or None; the reader of a file looks
            up the line that key was set on (see :func:`asr.config_file.load_yaml_with_lines`).
    """

    def __init__(self, message: str, key: str | None = None) -> None:
        super().__init__(message)
        self.key = key


class YamlLoader(yaml.SafeLoader):
    """SafeLoader that also reads ``3e-4`` / ``1E5`` as floats (YAML 1.2), not as strings."""


YamlLoader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(r"^[-+]?(?:[0-9][0-9_]*(?:\.[0-9_]*)?|\.[0-9_]+)[eE][-+]?[0-9]+$"),
    list("-+0123456789."),
)


def save_yaml(data: Mapping[str, Any], path: str | Path, header: str = "") -> None:
    """Write ``data`` as YAML (keys in insertion order), after ``header`` (comment lines)."""
    Path(path).write_text(header + yaml.safe_dump(_plain(data), sort_keys=False), encoding="utf-8")


def apply_overrides(data: Mapping[str, Any], overrides: list[str]) -> dict[str, Any]:
    """Return a copy of ``data`` with dotted ``key=value`` overrides applied.

    Values are parsed as YAML scalars/lists (``lr=3e-4``, ``model.bidirectional=false``,
    ``model.conv_channels=[32,32]``). Intermediate mappings are created as needed.

    >>> apply_overrides({"model": {"layers": 3}}, ["model.layers=5", "name=x"])
    {'model': {'layers': 5}, 'name': 'x'}
    """
    out = _deep_copy(data)
    for item in overrides:
        key, sep, raw = item.partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"override {item!r}: expected key=value")
        try:
            value = yaml.load(raw, Loader=YamlLoader) if raw.strip() else ""
        except yaml.YAMLError:
            raise ConfigError(f"override {item!r}: value is not valid YAML") from None
        node = out
        parts = key.strip().split(".")
        for part in parts[:-1]:
            child = node.get(part)
            if child is None:
                child = node[part] = {}
            elif not isinstance(child, dict):
                raise ConfigError(f"override {item!r}: {part!r} is not a section")
            node = child
        node[parts[-1]] = value
    return out


def merge(base: Mapping[str, Any], update: Mapping[str, Any]) -> dict[str, Any]:
    """Recursively merge ``update`` into a copy of ``base`` (mappings merge, other values replace)."""
    out = _deep_copy(base)
    for key, value in update.items():
        if isinstance(value, Mapping) and isinstance(out.get(key), dict):
            out[key] = merge(out[key], value)
        else:
            out[key] = _deep_copy(value)
    return out


def config_from_dict(cls: type[T], data: Mapping[str, Any] | None, where: str = "") -> T:
    """Build dataclass ``cls`` from ``data``; nested dataclass fields are built recursively.

    Raises ``ConfigError`` for unknown keys or values of the wrong type, naming the dotted key.
    Values are converted to the field's type (lists to tuples, ints to floats, mappings to nested
    dataclasses); a dataclass that calls :func:`check_types` checks the same rules when built in Python.
    """
    data = dict(data or {})
    fields = {f.name: f for f in dataclasses.fields(cls) if f.init}
    prefix = f"{where}." if where else ""
    unknown = sorted((str(k) for k in data if not isinstance(k, str) or k not in fields))  # YAML keys may be ints
    if unknown:
        raise ConfigError(f"unknown key '{prefix}{unknown[0]}' in {cls.__name__} (allowed: {', '.join(fields)})",
                          key=prefix + unknown[0])
    hints = _type_hints(cls)
    kwargs = {}
    for name, value in data.items():
        kwargs[name] = _coerce(hints[name], value, prefix + name, mappings=True)
    try:
        return cls(**kwargs)
    except (TypeError, ValueError) as e:  # from __post_init__: "optim.lr must be ...", "rnn_layers: ..."
        message = str(e)
        name = _field_named(message, fields, data)
        key = prefix + name if name else where or None
        if name and where and re.match(rf"{name}\b", message):  # "rnn_layers: ..." -> "model.rnn_layers: ..."
            message = f"{where}.{message}"
        elif not (key and re.match(rf"{re.escape(key)}\b", message)):  # "optim.lr must be ..." stays so
            message = f"{where or cls.__name__}: {message}"
        raise ConfigError(message, key=key) from None


def _field_named(message: str, fields: Mapping[str, Any], given: Mapping[str, Any]) -> str | None:
    """The field of a dataclass a ``__post_init__`` error is about: the first of the fields its
    message names that was ``given``, else the first named; None when it names none.

    >>> _field_named("FeatureConfig: n_mfcc=40 must be in 1..n_mels=20", {"n_mfcc": 0, "n_mels": 0}, {"n_mels": 20})
    'n_mels'
    """
    named = [word for word in re.findall(r"[A-Za-z_]\w*", message) if word in fields]
    return next((word for word in named if word in given), named[0] if named else None)


def check_types(cfg: Any, prefix: str = "") -> None:
    """Raise ``ConfigError`` for the first field of dataclass ``cfg`` whose value does not fit its
    type hint, for ``__post_init__``: a config built in Python is checked as one read from YAML.

    The rules are :func:`config_from_dict`'s (they share one checker), except that a nested config
    must be given as its dataclass, not as a mapping. Values are stored in their canonical form,
    as YAML gives them: ints become floats where a float is expected, lists become tuples, paths
    become strings. The message names the field after ``prefix`` (e.g. ``"data."``).

    >>> @dataclasses.dataclass(frozen=True)
    ... class Opt:
    ...     name: typing.Literal["adamw", "sgd"] = "adamw"
    ...     betas: tuple[float, float] = (0.9, 0.98)
    ...     def __post_init__(self):
    ...         check_types(self, "optim.")
    >>> Opt(betas=[0, 1]).betas
    (0.0, 1.0)
    >>> Opt(name="adam")
    Traceback (most recent call last):
    ...
    asr.config.ConfigError: optim.name: 'adam' is not one of 'adamw', 'sgd'
    """
    hints = _type_hints(type(cfg))
    for f in dataclasses.fields(cfg):
        if not f.init:
            continue
        value = getattr(cfg, f.name)
        checked = _coerce(hints[f.name], value, prefix + f.name, mappings=False)
        if checked is not value:
            object.__setattr__(cfg, f.name, checked)  # a frozen dataclass sets its own fields so


@functools.cache
def _type_hints(cls: type) -> dict[str, Any]:
    return typing.get_type_hints(cls)


def config_to_dict(obj: Any) -> dict[str, Any]:
    """Plain-dict form of a config dataclass (tuples become lists), safe for YAML and torch.save."""
    return _plain(dataclasses.asdict(obj))


def check_ranges(cfg: Any, prefix: str = "", **bounds: tuple) -> None:
    """Raise ValueError for the first field of ``cfg`` outside its bounds, for ``__post_init__``.

    A bound is ``(low, high)``, both ends included, or ``(low, high, ends)`` with ``ends`` one of
    ``"[]"``, ``"[)"``, ``"(]"``, ``"()"``; ``high`` None means no upper bound. A None value
    passes; NaN and infinities never do; each number of a list or tuple field (nested too) is
    checked. The message names the field after ``prefix`` (e.g. ``"optim."``).

    >>> @dataclasses.dataclass
    ... class Opt:
    ...     momentum: float = 0.9
    ...     betas: tuple = (0.9, 2.0)
    >>> check_ranges(Opt(), "optim.", momentum=(0, 1, "[)"), betas=(0, 1, "[)"))
    Traceback (most recent call last):
    ...
    ValueError: optim.betas must be in [0, 1), got [0.9, 2.0]
    >>> check_ranges(Opt(momentum=math.inf), momentum=(0, None))
    Traceback (most recent call last):
    ...
    ValueError: momentum must be a finite number >= 0, got inf
    """
    for name, bound in bounds.items():
        low, high, ends = (*bound, "[]") if len(bound) == 2 else bound
        value = getattr(cfg, name)
        numbers = list(_numbers(value))
        finite = all(isinstance(v, int) or math.isfinite(v) for v in numbers)
        inside = finite and all(
            (low <= v if ends[0] == "[" else low < v)
            and (high is None or (v <= high if ends[1] == "]" else v < high)) for v in numbers
        )
        if not inside:
            if high is None:
                want = f"{'>=' if ends[0] == '[' else '>'} {low}"
            else:
                want = f"in {ends[0]}{low}, {high}{ends[1]}"
            shown = _plain(value) if isinstance(value, tuple) else value
            raise ValueError(f"{prefix}{name} must be {'' if finite else 'a finite number '}{want}, got {shown}")


def _numbers(value: Any) -> typing.Iterator[Any]:
    """The numbers in ``value``: itself, or the items of a (nested) list or tuple; None gives none."""
    if isinstance(value, (list, tuple)):
        for item in value:
            yield from _numbers(item)
    elif value is not None:
        yield value


def _coerce(hint: Any, value: Any, key: str, mappings: bool) -> Any:
    """``value`` in the form ``hint`` asks for, or ``ConfigError`` naming ``key``. ``mappings``: a
    nested dataclass may be given as a mapping of its fields (YAML), not only as itself (Python)."""
    origin = typing.get_origin(hint)
    args = typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        errors = []
        for arg in args:
            if arg is type(None):
                continue
            try:
                return _coerce(arg, value, key, mappings)
            except ConfigError as e:
                errors.append(e)
        if errors:
            raise errors[0]
        raise ConfigError(f"{key}: bad value {value!r}", key=key)
    if dataclasses.is_dataclass(hint):
        if isinstance(value, hint):
            return value
        if not mappings:
            raise ConfigError(f"{key}: expected a {hint.__name__}, got {type(value).__name__} {value!r}", key=key)
        if not isinstance(value, Mapping):
            raise ConfigError(f"{key}: expected a mapping, got {value!r}", key=key)
        return config_from_dict(hint, value, key)
    if origin is tuple:
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{key}: expected a list, got {value!r}", key=key)
        if len(args) == 2 and args[1] is Ellipsis:
            return tuple(_coerce(args[0], v, key, mappings) for v in value)
        if len(args) != len(value):
            raise ConfigError(f"{key}: expected {len(args)} items, got {len(value)}", key=key)
        return tuple(_coerce(a, v, key, mappings) for a, v in zip(args, value))
    if origin is list:
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{key}: expected a list, got {value!r}", key=key)
        return [_coerce(args[0], v, key, mappings) for v in value] if args else list(value)
    if origin is dict or hint is dict:
        if not isinstance(value, Mapping):
            raise ConfigError(f"{key}: expected a mapping, got {value!r}", key=key)
        return dict(value)
    if origin is typing.Literal:
        if value not in args:
            raise ConfigError(f"{key}: {value!r} is not one of {', '.join(map(repr, args))}", key=key)
        return value
    if hint is Any:
        return value
    if hint is float:  # numbers.Real and Integral: numpy's numbers too, from Python callers
        if isinstance(value, bool) or not isinstance(value, numbers.Real):
            raise ConfigError(f"{key}: expected a number, got {value!r}", key=key)
        return value if type(value) is float else float(value)
    if hint is int:
        if isinstance(value, bool) or not isinstance(value, numbers.Integral):
            raise ConfigError(f"{key}: expected an integer, got {value!r}", key=key)
        return value if type(value) is int else int(value)
    if hint is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{key}: expected true or false, got {value!r}", key=key)
        return value
    if hint is str:
        if isinstance(value, os.PathLike):  # a path from a Python caller
            return os.fspath(value)
        if not isinstance(value, str):
            raise ConfigError(f"{key}: expected a string, got {value!r}", key=key)
        return value
    return value


def _plain(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, Path):
        return str(value)
    return value


def _deep_copy(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {k: _deep_copy(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_deep_copy(v) for v in value]
    return value
