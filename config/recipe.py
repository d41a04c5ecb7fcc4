"""One loader for every recipe: YAML plus dotted overrides into typed, frozen dataclasses.

A recipe section is a frozen dataclass whose annotations are the schema: ``int``, ``float``, ``bool``,
``str``, ``Path``, ``Literal[...]`` (choices), ``X | None``, ``tuple[X, ...]``, ``list[X]``,
``dict[str, X]``, ``Any`` and nested dataclasses. A number field may carry a range (:func:`bounded`);
checks across fields live in the dataclass's ``__post_init__`` (a ``ValueError`` naming the keys).
Everything is checked when the recipe is read, before any work starts (a paid API build or a GPU job
must not die halfway on a typo), and every error says ``FILE: key.path: expected X, got Y``.
"""

from __future__ import annotations

import dataclasses
import functools
import types
from collections.abc import Iterable, Mapping, Sequence
from importlib import resources
from pathlib import Path
from typing import Any, Literal, TypeVar, Union, get_args, get_origin, get_type_hints

import yaml

T = TypeVar("T")
PACKAGE_SCHEME = "pkg://"
_RANGE = "range"


class ConfigError(ValueError):
    """A recipe that cannot run: the file, the dotted key, what was expected and what was given."""


def bounded(default: Any = dataclasses.MISSING, *, ge: float | None = None, gt: float | None = None,
            le: float | None = None) -> Any:
    """A dataclass field whose number must lie in a range; the loader checks it and names the key."""
    return dataclasses.field(default=default, metadata={_RANGE: (ge, gt, le)})


def load(cls: type[T], path: str | Path, overrides: Sequence[str] = ()) -> T:
    """Read the YAML recipe at ``path``, apply ``a.b=value`` overrides and build a checked ``cls``."""
    try:
        data = yaml.safe_load(Path(path).read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as err:
        raise ConfigError(f"{path}: cannot read the recipe ({err})") from None
    return build(cls, apply_overrides(data if data is not None else {}, overrides, str(path)), str(path))


def apply_overrides(data: Any, overrides: Sequence[str], source: str) -> Any:
    """Set each ``a.b=value`` (``sources.0.root=...`` indexes a list); the value is read as YAML."""
    for item in overrides:
        key, sep, raw = item.partition("=")
        if not sep or not key:
            raise ConfigError(f"{source}: override {item!r}: expected KEY=VALUE, e.g. model.path=/ckpt")
        try:
            value = yaml.safe_load(raw)
        except yaml.YAMLError as err:
            raise ConfigError(f"{source}: override {item!r}: the value is not YAML ({err})") from None
        data = _set(data, key.split("."), value, source, key)
    return data


def _set(node: Any, parts: list[str], value: Any, source: str, key: str) -> Any:
    if not parts:
        return value
    head, rest = parts[0], parts[1:]
    if isinstance(node, list) and head.isdigit() and int(head) < len(node):
        node[int(head)] = _set(node[int(head)], rest, value, source, key)
        return node
    if node is None:
        node = {}
    if not isinstance(node, dict):
        raise ConfigError(f"{source}: override {key}: {head!r} is inside a {type(node).__name__}, not a mapping")
    node[head] = _set(node.get(head), rest, value, source, key)
    return node


def build(cls: type[T], data: Any, source: str, key: str = "") -> T:
    """Build a checked ``cls`` from parsed data; ``key`` is the dotted path of ``data`` inside ``source``."""
    return _convert(cls, data, _Where(source, key))


_PATH_KINDS = {"path": (Path.exists, "does not exist"), "file": (Path.is_file, "is not a file"),
               "folder": (Path.is_dir, "is not a folder")}


def missing_paths(paths: Iterable[tuple[str, object]], kind: Literal["path", "file", "folder"] = "path") -> list[str]:
    """``<key>: <path> does not exist`` (``is not a file``, ``is not a folder``) for each (recipe key, path)
    that this machine lacks (None: no path): a command names them all in one line before any work starts."""
    present, problem = _PATH_KINDS[kind]
    return [f"{key}: {path} {problem}" for key, path in paths if path is not None and not present(Path(str(path)).expanduser())]


def missing_model(key: str, model: str) -> list[str]:
    """:func:`missing_paths` of a model reference that names a folder on this machine: a path (absolute,
    relative with ``./``, or two or more folders deep, as every recipe's outputs are); a hub id
    ``org/name`` and a URL are the loader's to fetch."""
    local = "://" not in model and (model.startswith(("/", ".", "~")) or model.count("/") > 1)
    return missing_paths([(key, model)], "folder") if local else []


def package_file(path: str | Path) -> Path:
    """A file a recipe names: ``pkg://medsage.plugins.verl/templates/retry.jinja`` is one shipped inside
    the installed package (found from any working directory); anything else is a path as written."""
    text = str(path)
    if not text.startswith(PACKAGE_SCHEME):
        return Path(text).expanduser()
    package, _, inner = text.removeprefix(PACKAGE_SCHEME).partition("/")
    try:
        return Path(str(resources.files(package).joinpath(inner)))
    except ModuleNotFoundError:
        raise FileNotFoundError(f"{text}: no installed package {package!r}") from None


@dataclasses.dataclass(frozen=True)
class _Where:
    source: str
    key: str

    def child(self, name: str | int) -> "_Where":
        if isinstance(name, int):
            return _Where(self.source, f"{self.key}[{name}]")
        return _Where(self.source, f"{self.key}.{name}" if self.key else name)

    def error(self, message: str) -> ConfigError:
        return ConfigError(f"{self.source}: {self.key}: {message}" if self.key else f"{self.source}: {message}")

    def expected(self, what: str, value: Any) -> ConfigError:
        return self.error(f"expected {what}, got {_shown(value)}")


def _shown(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, (dict, list)):
        return f"a {'mapping' if isinstance(value, dict) else 'list'}"
    return f"{value!r} ({type(value).__name__})"


def _convert(hint: Any, value: Any, where: _Where) -> Any:
    """``value`` as the annotated type ``hint``, or a :class:`ConfigError` naming ``where``."""
    origin, args = get_origin(hint), get_args(hint)
    if hint is Any or hint is object:
        return value
    if dataclasses.is_dataclass(hint):
        return _dataclass(hint, value, where)
    if origin is Literal:
        if value not in args:
            raise where.expected("one of " + ", ".join(map(repr, args)), value)
        return value
    if origin is Union or origin is types.UnionType:
        return _union(args, value, where)
    if origin in (tuple, list):
        return _sequence(hint, value, where)
    if origin is dict or hint is dict:
        return _mapping(args, value, where)
    return _scalar(hint, value, where)


def _union(args: tuple, value: Any, where: _Where) -> Any:
    if value is None:
        if type(None) in args:
            return None
        raise where.expected(_name(Union[args]), value)
    options = [a for a in args if a is not type(None)]
    for option in options:
        try:
            return _convert(option, value, where)
        except ConfigError:
            if len(options) == 1 and _is_structured(option, value):  # the inner error names the deeper key
                raise
    raise where.expected(_name(Union[args]), value)


def _is_structured(hint: Any, value: Any) -> bool:
    return isinstance(value, (Mapping, list)) and (dataclasses.is_dataclass(hint) or get_origin(hint) in (tuple, list, dict))


def _sequence(hint: Any, value: Any, where: _Where) -> Any:
    if not isinstance(value, (list, tuple)):
        raise where.expected(_name(hint), value)
    args = get_args(hint)
    if get_origin(hint) is tuple and args and args[-1] is not Ellipsis:
        if len(value) != len(args):
            raise where.error(f"expected a list of {len(args)} items, got {len(value)}")
        return tuple(_convert(a, v, where.child(i)) for i, (a, v) in enumerate(zip(args, value)))
    item = args[0] if args else Any
    items = [_convert(item, v, where.child(i)) for i, v in enumerate(value)]
    return tuple(items) if get_origin(hint) is tuple else items


def _mapping(args: tuple, value: Any, where: _Where) -> dict:
    if not isinstance(value, Mapping):
        raise where.expected("a mapping", value)
    key_type, value_type = args or (Any, Any)
    return {_convert(key_type, k, where): _convert(value_type, v, where.child(str(k))) for k, v in value.items()}


def _scalar(hint: Any, value: Any, where: _Where) -> Any:
    if hint is bool:
        if isinstance(value, bool):
            return value
    elif hint is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
    elif hint is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        if isinstance(value, str):  # YAML 1.1 reads 1e-5 (no dot) as text
            try:
                return float(value)
            except ValueError:
                pass
    elif hint is Path:
        if isinstance(value, (str, Path)):
            return Path(value)
    elif isinstance(hint, type) and isinstance(value, hint):
        return value
    raise where.expected(_name(hint), value)


def _dataclass(cls: type, value: Any, where: _Where) -> Any:
    if isinstance(value, cls):
        return value
    if not isinstance(value, Mapping):
        raise where.expected(_name(cls), value)
    fields = {f.name: f for f in dataclasses.fields(cls) if f.init}
    for name in value:
        if name not in fields:
            raise where.child(str(name)).error(f"unknown key; valid keys here: {', '.join(fields)}")
    hints = _hints(cls)
    values = {}
    for name, spec in fields.items():
        if name in value:
            values[name] = _convert(hints[name], value[name], where.child(name))
            _check_range(spec, values[name], where.child(name))
        elif spec.default is dataclasses.MISSING and spec.default_factory is dataclasses.MISSING:
            raise where.child(name).error("required, not given")
    try:
        return cls(**values)
    except (TypeError, ValueError) as err:  # the section's own checks across its keys
        raise _section_error(where, str(err), fields) from None


def _section_error(where: _Where, message: str, fields: Mapping[str, Any]) -> ConfigError:
    """A section's own check names its key first (``"url: expected ..."``); that key joins the path."""
    key, sep, rest = message.partition(": ")
    if sep and key.split(".")[0] in fields:
        return where.child(key).error(rest)
    return where.error(message)


@functools.lru_cache(maxsize=None)
def _hints(cls: type) -> dict[str, Any]:
    """A section's resolved annotations; cached, as reward workers read theirs once per sample."""
    return get_type_hints(cls)


def _check_range(spec: dataclasses.Field, value: Any, where: _Where) -> None:
    ge, gt, le = spec.metadata.get(_RANGE, (None, None, None))
    if value is None:
        return
    if ge is not None and value < ge:
        raise where.expected(f">= {ge}", value)
    if gt is not None and value <= gt:
        raise where.expected(f"> {gt}", value)
    if le is not None and value > le:
        raise where.expected(f"<= {le}", value)


def _name(hint: Any) -> str:
    """How an annotation reads in an error: ``int``, ``list of str``, ``Path or null``."""
    origin, args = get_origin(hint), get_args(hint)
    if origin is Union or origin is types.UnionType:
        return " or ".join("null" if a is type(None) else _name(a) for a in args)
    if origin in (tuple, list):
        item = args[0] if args else Any
        if args and args[-1] is not Ellipsis and origin is tuple:
            return f"a list of {len(args)} items"
        return f"a list of mappings ({item.__name__})" if dataclasses.is_dataclass(item) else f"a list of {_name(item)}"
    if origin is Literal:
        return "one of " + ", ".join(map(repr, args))
    if dataclasses.is_dataclass(hint):
        return f"a mapping ({hint.__name__})"
    return getattr(hint, "__name__", str(hint))
