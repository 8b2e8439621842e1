"""The one strict reader for contestkit's YAML settings files.

``contestkit.yaml`` (and the user's ``config.yaml``), ``server.yaml`` and its ``kubernetes:`` mapping are
all read here, so that every file answers a mistake the same way, in one sentence naming the file and the
line:

* a key written twice, at any depth, is refused with both line numbers (pasting a block from the docs
  into a file that already sets the key must not let the last one win silently);
* an unknown key is answered with the nearest valid name ("did you mean 'registry'?");
* a value of the wrong type is answered with an example of *that* key (``admins: [host@example.com]``),
  never a generic one.

What each file may hold (its :class:`Setting` table) and the checks that go beyond types (a cpuset that
names CPUs this machine lacks, a namespace that is no DNS label) stay in the module that owns the file;
only the reading and the typing live here.
"""

from __future__ import annotations

import difflib
import os
import types
import typing
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import MISSING, dataclass, fields
from datetime import date
from enum import Enum
from pathlib import Path
from typing import Any

import yaml

from contestkit.errors import UsageError


class Kind(str, Enum):
    """The value types a setting may have."""

    STR = "str"  # a string (numbers are taken as their text: ``python_image: 3.11`` is "3.11")
    PATH = "path"  # a file or directory path, relative to the file's folder
    INT = "int"  # a whole number
    FLOAT = "float"  # a number
    BOOL = "bool"  # true or false
    STR_LIST = "str_list"  # a list of strings
    STR_MAP = "str_map"  # a mapping of NAME: value (values taken as text)
    MAPPING = "mapping"  # a mapping of settings, checked by its owner
    MAPPING_LIST = "mapping_list"  # a list of mappings (Kubernetes tolerations)
    CHOICE = "choice"  # one of an Enum's values


_EXPECTED = {
    Kind.STR: "a string",
    Kind.PATH: "a path string",
    Kind.INT: "a whole number",
    Kind.FLOAT: "a number",
    Kind.BOOL: "true or false",
    Kind.STR_LIST: "a list of strings",
    Kind.STR_MAP: "a mapping of NAME: value",
    Kind.MAPPING: "a mapping of settings",
    Kind.MAPPING_LIST: "a list of mappings",
}


@dataclass(frozen=True)
class Setting:
    """One key a file may hold: its type, whether it may be null, and an example line's value."""

    name: str
    kind: Kind
    example: str  # the value as YAML, shown after "e.g. NAME: " when a value has the wrong type
    nullable: bool = False
    choices: type[Enum] | None = None  # for Kind.CHOICE

    def expected(self) -> str:
        if self.kind is Kind.CHOICE and self.choices is not None:
            return "one of " + ", ".join(str(choice.value) for choice in self.choices)
        return _EXPECTED[self.kind]


@dataclass(frozen=True)
class Section:
    """A mapping read from a settings file, with the line of each key (or a label, for a plain dict).

    ``prefix`` is the mapping's place in the file (``kubernetes.``), so that errors name nested keys as a
    reader finds them.
    """

    label: str  # the file's path (or, for a plain dict, what it is: "server.yaml 'kubernetes'")
    entries: dict[str, tuple[int | None, Any]]  # key -> (line, YAML node or plain value)
    prefix: str = ""
    from_file: bool = False

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], label: str) -> Section:
        """Settings given as a plain mapping (made in code, or already loaded): no lines to name."""
        if not isinstance(data, Mapping):
            raise UsageError(f"{label} must be a mapping of settings, not {data!r}.")
        return cls(label, {str(key): (None, value) for key, value in data.items()})

    def __contains__(self, key: object) -> bool:
        return key in self.entries

    def __iter__(self) -> Iterator[str]:
        return iter(self.entries)

    def line(self, key: str) -> int | None:
        return self.entries[key][0] if key in self.entries else None

    def where(self, key: str | None = None) -> str:
        """``FILE, line N`` for a key read from a file, else the section's label."""
        line = self.line(key) if key is not None else None
        return f"{self.label}, line {line}" if line is not None else self.label

    def name(self, key: str) -> str:
        """The key as a reader of the file finds it (``kubernetes.namespace``)."""
        return self.prefix + key

    def value(self, key: str) -> Any:
        """The plain Python value of ``key`` (``None`` when absent)."""
        if key not in self.entries:
            return None
        _, value = self.entries[key]
        if isinstance(value, yaml.Node):
            try:
                return yaml.SafeLoader("").construct_object(value, deep=True)
            except yaml.YAMLError as exc:
                raise UsageError(f"{self.where(key)}: key '{self.name(key)}' cannot be read ({exc}).") from None
        return value

    def without(self, key: str) -> Section:
        """This mapping less ``key`` (a key its reader accepts and drops)."""
        return Section(self.label, {k: v for k, v in self.entries.items() if k != key}, self.prefix, self.from_file)

    def section(self, key: str) -> Section:
        """The nested mapping under ``key``, keeping its lines when it was read from a file."""
        line, value = self.entries[key]
        label = self.label if self.from_file else f"{self.label} '{self.name(key)}'"
        if isinstance(value, yaml.MappingNode):
            return Section(self.label, _entries(value), f"{self.name(key)}.", from_file=True)
        if isinstance(value, yaml.Node):
            if isinstance(value, yaml.ScalarNode) and value.tag == "tag:yaml.org,2002:null":
                return Section(self.label, {}, f"{self.name(key)}.", from_file=True)
            raise UsageError(f"{self.where(key)}: key '{self.name(key)}' must be a mapping of settings.")
        return Section.from_dict(value or {}, label)


def _line(node: yaml.Node) -> int:
    return node.start_mark.line + 1


def _entries(node: yaml.MappingNode) -> dict[str, tuple[int | None, Any]]:
    return {str(key.value): (_line(key), value) for key, value in node.value}


def _refuse_duplicates(path: Path, node: yaml.Node, prefix: str = "") -> None:
    """Every mapping in the document, at any depth: a key written twice is refused with both lines."""
    if isinstance(node, yaml.MappingNode):
        seen: dict[str, int] = {}
        for key, value in node.value:
            if not isinstance(key, yaml.ScalarNode):
                raise UsageError(f"{path}, line {_line(key)}: keys must be plain names.")
            if key.value in seen:
                raise UsageError(
                    f"{path}, line {_line(key)}: key '{prefix}{key.value}' is set twice (first on line "
                    f"{seen[key.value]}); keep one of the two lines."
                )
            seen[key.value] = _line(key)
            _refuse_duplicates(path, value, f"{prefix}{key.value}.")
    elif isinstance(node, yaml.SequenceNode):
        for item in node.value:
            _refuse_duplicates(path, item, prefix)


def load(path: Path) -> Section:
    """Read a settings file: a mapping of ``key: value`` lines (an empty file is an empty mapping)."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise UsageError(f"Cannot read {path}: {exc.strerror}.") from exc
    except UnicodeDecodeError as exc:
        raise UsageError(f"{path}: not UTF-8 text (byte {exc.start} cannot be decoded); save it as UTF-8.") from None
    try:
        root = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = f", line {mark.line + 1}" if mark else ""
        problem = exc.problem or exc.context
        raise UsageError(f"{path}{line}: not valid YAML ({problem}); fix the syntax there.") from None
    except yaml.YAMLError as exc:
        raise UsageError(f"{path}: not valid YAML ({exc}).") from None
    if root is None:
        return Section(str(path), {}, from_file=True)
    if not isinstance(root, yaml.MappingNode):
        raise UsageError(f"{path}, line {_line(root)}: the file must be a mapping of key: value lines.")
    _refuse_duplicates(path, root)
    return Section(str(path), _entries(root), from_file=True)


def unknown_key(where: str, name: str, known: Iterable[str]) -> UsageError:
    """The answer to a key no setting has: the nearest valid name, else the list of them."""
    known = sorted(known)
    leaf = name.rsplit(".", 1)[-1]
    close = difflib.get_close_matches(leaf, known, n=1)
    hint = f"did you mean '{close[0]}'?" if close else f"valid keys: {', '.join(known)}"
    return UsageError(f"{where}: unknown key '{name}' ({hint}).")


def check_keys(section: Section, known: Iterable[str]) -> None:
    """Refuse the first key of ``section`` that is not in ``known``."""
    known = set(known)
    for key in section:
        if key not in known:
            raise unknown_key(section.where(key), section.name(key), known)


def wrong_type(where: str, name: str, setting: Setting, value: Any) -> UsageError:
    """A value of the wrong type: what the key takes, with an example of that key."""
    shown = f"{type(value).__name__} {value!r}"
    return UsageError(
        f"{where}: key '{name}' must be {setting.expected()}, e.g. `{setting.name}: {setting.example}` (it is {shown})."
    )


def convert(setting: Setting, value: Any, where: str, *, name: str | None = None, base_dir: Path | None = None) -> Any:
    """``value`` checked against ``setting``'s type; ``where`` is "FILE, line N" or a label."""
    name = name or setting.name
    if value is None:
        if setting.nullable:
            return None
        raise UsageError(f"{where}: key '{name}' must not be empty, e.g. `{setting.name}: {setting.example}`.")

    def bad() -> UsageError:
        return wrong_type(where, name, setting, value)

    kind = setting.kind
    if kind is Kind.STR:
        # A date or time is taken as its text too (``freeze_at: 2026-06-01T00:00:00Z``, which YAML reads
        # as a datetime); its reader parses the text.
        if isinstance(value, bool) or not isinstance(value, str | int | float | date):
            raise bad()
        return str(value)
    if kind is Kind.PATH:
        if not isinstance(value, str | Path):
            raise bad()
        path = Path(os.path.expandvars(os.path.expanduser(str(value))))
        return path if path.is_absolute() or base_dir is None else base_dir / path
    if kind is Kind.INT:
        if isinstance(value, bool) or not isinstance(value, int):
            raise bad()
        return value
    if kind is Kind.FLOAT:
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise bad()
        return float(value)
    if kind is Kind.BOOL:
        if not isinstance(value, bool):
            raise bad()
        return value
    if kind is Kind.STR_LIST:
        if not isinstance(value, list) or not all(isinstance(v, str | int) and not isinstance(v, bool) for v in value):
            raise bad()
        return [str(v) for v in value]
    if kind is Kind.STR_MAP:
        if not isinstance(value, dict) or not all(
            isinstance(k, str) and not isinstance(v, dict | list) for k, v in value.items()
        ):
            raise bad()
        return {k: "" if v is None else str(v) for k, v in value.items()}
    if kind is Kind.MAPPING:
        if not isinstance(value, dict):
            raise bad()
        return value
    if kind is Kind.MAPPING_LIST:
        if not isinstance(value, list) or not all(isinstance(v, dict) for v in value):
            raise bad()
        return value
    if kind is Kind.CHOICE:
        assert setting.choices is not None
        try:
            return setting.choices(value)
        except ValueError:
            raise bad() from None
    raise AssertionError(f"unknown kind {kind}")  # pragma: no cover


def refuse_retired(section: Section, retired: Mapping[str, str]) -> None:
    """A key earlier versions read and this one does not: one sentence saying where the setting lives now
    (files stay strict: a silently ignored key would let a user believe it does something)."""
    for key in section:
        if key in retired:
            raise UsageError(
                f"{section.where(key)}: key '{section.name(key)}' is no longer read ({retired[key]}); remove that line."
            )


def read(
    section: Section,
    settings: Mapping[str, Setting],
    *,
    base_dir: Path | None = None,
    retired: Mapping[str, str] | None = None,
) -> dict[str, Any]:
    """The values of ``section``, each checked against its setting; retired and unknown keys are refused."""
    refuse_retired(section, retired or {})
    check_keys(section, settings)
    return {
        key: convert(settings[key], section.value(key), section.where(key), name=section.name(key), base_dir=base_dir)
        for key in section
    }


def settings_of(cls: type, examples: Mapping[str, str], *, skip: Iterable[str] = ()) -> dict[str, Setting]:
    """The :class:`Setting` table of a dataclass, its kinds read from the type hints.

    A field without an entry in ``examples`` takes its default, written as YAML, as its example; a
    field whose default says nothing (null, empty) must have one, so no type error goes without one.
    """
    hints = typing.get_type_hints(cls)
    out: dict[str, Setting] = {}
    skipped = set(skip)
    for item in fields(cls):
        if item.name in skipped:
            continue
        kind, nullable, choices = _kind_of(hints[item.name])
        example = examples.get(item.name)
        if example is None:
            default = item.default if item.default_factory is MISSING else item.default_factory()
            if isinstance(default, Enum):
                default = default.value
            if default is None or default == [] or default == {} or default is MISSING:
                raise AssertionError(f"{cls.__name__}.{item.name} needs an example")  # pragma: no cover
            example = yaml.safe_dump(default, default_flow_style=True).strip().removesuffix("...").strip()
        out[item.name] = Setting(item.name, kind, example, nullable, choices)
    return out


def _kind_of(hint: Any) -> tuple[Kind, bool, type[Enum] | None]:
    nullable = False
    args = typing.get_args(hint)
    if typing.get_origin(hint) in (typing.Union, types.UnionType) and type(None) in args:
        nullable = True
        rest = [arg for arg in args if arg is not type(None)]
        hint = rest[0]
    origin = typing.get_origin(hint) or hint
    if isinstance(origin, type) and issubclass(origin, Enum):
        return Kind.CHOICE, nullable, origin
    if origin is bool:
        return Kind.BOOL, nullable, None
    if origin is int:
        return Kind.INT, nullable, None
    if origin is float:
        return Kind.FLOAT, nullable, None
    if origin is str:
        return Kind.STR, nullable, None
    if origin is Path:
        return Kind.PATH, nullable, None
    if origin is list:
        (item,) = typing.get_args(hint)
        return (Kind.MAPPING_LIST if typing.get_origin(item) is dict else Kind.STR_LIST), nullable, None
    if origin is dict:
        _, value = typing.get_args(hint)
        return (Kind.STR_MAP if value is str else Kind.MAPPING), nullable, None
    raise AssertionError(f"no Kind for {hint!r}")  # pragma: no cover
