"""Check a composed config before anything runs: unknown keys, wrong types, bad choices.

Hydra already rejects an unknown group option (listing the available ones) and an override of
a key that does not exist. What it cannot see is a misspelled key written in a YAML file or
added with ``+key=...``, or a value of the wrong type: those would surface only when the object
is built, possibly after minutes of data preparation. Here every ``_target_`` node is matched
against the signature of what it builds, and the ``model`` node against ``TransformerConfig``.
"""

import dataclasses
import difflib
import inspect
import types
import typing
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

from hydra.utils import get_object


class ConfigError(ValueError):
    """One message listing every problem found, each with the valid choices."""


def check_config(config: Mapping[str, Any], typed_nodes: Mapping[str, Callable]) -> None:
    """Raise ``ConfigError`` for every unknown key or mistyped value.

    Args:
        config: the resolved config as plain containers (``OmegaConf.to_container``).
        typed_nodes: nodes without ``_target_`` checked against a callable's signature,
            e.g. ``{"model": TransformerConfig, "model.embeddings": EmbeddingInit}``.
    """
    errors: list[str] = []
    for path, target in typed_nodes.items():
        node = _select(config, path)
        if isinstance(node, Mapping):
            # a typed child (``model.embeddings`` inside ``model``) is checked on its own
            children = {p.removeprefix(f"{path}.") for p in typed_nodes if p.startswith(f"{path}.")}
            node = {k: v for k, v in node.items() if k not in children}
            errors += check_node(node, target, path)
    errors += _check_targets(config, "")
    if errors:
        raise ConfigError("invalid config:\n  " + "\n  ".join(errors))


def _select(config: Mapping[str, Any], path: str) -> Any:
    node: Any = config
    for key in path.split("."):
        node = node.get(key) if isinstance(node, Mapping) else None
    return node


def _check_targets(node: Any, path: str) -> list[str]:
    errors: list[str] = []
    if isinstance(node, Mapping):
        if "_target_" in node:
            errors += _check_target_node(node, path)
        for key, value in node.items():
            if not str(key).startswith("_"):
                errors += _check_targets(value, f"{path}.{key}" if path else str(key))
    elif isinstance(node, list):
        for i, value in enumerate(node):
            errors += _check_targets(value, f"{path}[{i}]")
    return errors


def _check_target_node(node: Mapping[str, Any], path: str) -> list[str]:
    try:
        target = get_object(node["_target_"])
    except Exception as err:  # noqa: BLE001 - Hydra wraps import errors in several types
        return [f"{path}._target_: cannot import {node['_target_']!r} ({err})"]
    return check_node(node, target, path)


def check_node(node: Mapping[str, Any], target: Callable, path: str) -> list[str]:
    """Problems of ``node``'s keys and values against ``target``'s parameters."""
    try:
        params = inspect.signature(target).parameters
    except (TypeError, ValueError):
        return []  # a builtin without a signature: nothing to check against
    hints = _type_hints(target)
    open_kwargs = any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values())
    named = [n for n, p in params.items() if p.kind not in _VARIADIC]
    errors = []
    for key, value in node.items():
        if str(key).startswith("_"):
            continue
        if key not in params:
            if not open_kwargs:
                errors.append(_unknown_key(path, key, named))
        elif key in hints and not _is_config_object(value) and _matches(value, hints[key]) is False:
            errors.append(f"{path}.{key}={value!r}: expected {_describe(hints[key])}")
    return errors


_VARIADIC = (inspect.Parameter.VAR_KEYWORD, inspect.Parameter.VAR_POSITIONAL)


def _unknown_key(path: str, key: str, valid: Sequence[str]) -> str:
    close = difflib.get_close_matches(key, valid, n=1)
    hint = f" (did you mean {close[0]!r}?)" if close else ""
    return f"{path}.{key}: unknown key{hint}; valid keys: {', '.join(valid)}"


def _type_hints(target: Callable) -> dict[str, Any]:
    if dataclasses.is_dataclass(target):
        function = target
    else:
        function = target.__init__ if inspect.isclass(target) else target
    try:
        return typing.get_type_hints(function)
    except Exception:  # noqa: BLE001 - unresolvable forward references: skip type checks
        return {}


def _is_config_object(value: Any) -> bool:
    return isinstance(value, Mapping) and "_target_" in value


def _matches(value: Any, hint: Any) -> bool | None:
    """True / False when the value does / does not fit the hint, None when it cannot say."""
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if hint is Any:
        return True
    if origin in (typing.Union, types.UnionType):
        results = [_matches(value, a) for a in args]
        return True if True in results else (None if None in results else False)
    if origin is typing.Literal:
        return any(value == a and type(value) is type(a) for a in args)
    if hint is type(None):
        return value is None
    if hint is bool:
        return isinstance(value, bool)
    if hint is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if hint is float:
        return isinstance(value, int | float) and not isinstance(value, bool)
    if hint is str:
        return isinstance(value, str)
    container = origin or hint
    if container in (list, tuple, Sequence, Iterable):
        return isinstance(value, list)
    if container in (dict, Mapping):
        return isinstance(value, Mapping)
    return None


def _describe(hint: Any) -> str:
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):
        return " or ".join(_describe(a) for a in args)
    if origin is typing.Literal:
        return "one of " + ", ".join(repr(a) for a in args)
    if hint is type(None):
        return "null"
    return getattr(hint, "__name__", str(hint))
