"""Reading a YAML config file: a mapping, checked for alias bombs, with the line of every key.

Errors name the file, and the line where the parser knows it; :func:`load_yaml_with_lines` also
returns where each dotted key was set, so that :func:`asr.train_config.resolve_config` can name the
line of a value it refuses (``conf.yaml:7: optim.lr must be ...``).
"""

from __future__ import annotations

import collections
from pathlib import Path
from typing import Any

import yaml

from asr.config import ConfigError, YamlLoader


def load_yaml(path: str | Path) -> dict[str, Any]:
    """Read a YAML mapping from ``path``; raises ``ConfigError`` naming the file on any problem."""
    return load_yaml_with_lines(path)[0]


def load_yaml_with_lines(path: str | Path) -> tuple[dict[str, Any], dict[str, int]]:
    """Read a YAML mapping from ``path``, with the 1-based line each dotted key was set on.

    A key reached through an alias or a merge key (``<<: *base``) has the line of the text that gave
    its value, the anchored mapping's; a mapping used twice through aliases has lines under its first
    key only (in breadth-first order; elsewhere, look up the enclosing key). Keys inside lists have none.

    Raises:
        ConfigError: naming the file (and the line, for a syntax error): unreadable, not UTF-8, not
            YAML, not a mapping, or aliases that loop or expand past ``_MAX_VALUES`` values.

    A file ``epochs: 3\\noptim:\\n  lr: 3e-4`` gives ``{'epochs': 1, 'optim': 2, 'optim.lr': 3}``.
    """
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as e:
        raise ConfigError(f"{path}: cannot read config: {e.strerror or e}") from None
    except UnicodeDecodeError as e:
        line = _text_line(path, e.start)
        raise ConfigError(f"{path}:{line}: not UTF-8 text (a YAML config expected)") from None
    loader = YamlLoader(text)
    try:
        node = loader.get_single_node()
        data = loader.construct_document(node) if node is not None else None
        if data is None:
            return {}, {}
        if not isinstance(data, dict):
            raise ConfigError(f"{path}: expected a mapping at the top level, got {type(data).__name__}")
        _check_tree(data, str(path))
        return data, _key_lines(loader, node)
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f":{mark.line + 1}" if mark is not None else ""
        raise ConfigError(f"{path}{where}: invalid YAML: {getattr(e, 'problem', e)}") from None
    except RecursionError:
        raise ConfigError(f"{path}: invalid YAML: nested too deeply") from None
    finally:
        loader.dispose()


def _key_lines(loader: yaml.SafeLoader, root: yaml.MappingNode) -> dict[str, int]:
    """``{"optim.lr": 7}``: the 1-based line of each key of the mappings in ``root`` (composed and
    constructed by ``loader``, so merge keys are already flattened), nested mappings under their
    dotted path. Keys are spelled as :func:`config_from_dict` names them (``str`` of the value)."""
    lines: dict[str, int] = {}
    seen: set[int] = set()
    todo = collections.deque([("", root)])  # breadth first: a mapping met twice is walked under its first key
    while todo:
        prefix, node = todo.popleft()
        if not isinstance(node, yaml.MappingNode) or id(node) in seen:
            continue
        seen.add(id(node))
        entries: dict[str, tuple[int, yaml.Node]] = {}  # a key given twice: the last wins, as in the data
        for key_node, value_node in node.value:
            if isinstance(key_node, yaml.ScalarNode) and key_node.tag != "tag:yaml.org,2002:merge":
                entries[f"{prefix}{loader.construct_object(key_node)}"] = (key_node.start_mark.line + 1, value_node)
        for key, (line, value_node) in entries.items():
            lines[key] = line
            todo.append((f"{key}.", value_node))
    return lines


_MAX_VALUES = 1_000_000  # values in a config once its aliases are expanded (a few hundred are usual)


def _check_tree(data: Any, where: str) -> None:
    """Raise ``ConfigError`` if YAML aliases make ``data`` contain itself, or expand it past
    ``_MAX_VALUES`` values (an alias of an alias of ... a list: the "billion laughs")."""
    count = 0
    stack: list[tuple[Any, frozenset[int]]] = [(data, frozenset())]
    while stack:
        node, parents = stack.pop()
        count += 1
        if count > _MAX_VALUES:
            raise ConfigError(f"{where}: YAML aliases expand to more than {_MAX_VALUES} values")
        if isinstance(node, (dict, list)):
            if id(node) in parents:
                raise ConfigError(f"{where}: recursive YAML alias (a value that contains itself)")
            inner = parents | {id(node)}
            stack.extend((child, inner) for child in (node.values() if isinstance(node, dict) else node))


def _text_line(path: str | Path, offset: int) -> int:
    """The 1-based line of byte ``offset`` in the file ``path``."""
    with open(path, "rb") as f:
        return f.read(offset).count(b"\n") + 1
