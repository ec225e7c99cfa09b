"""Darknet .cfg text -> ordered sections with typed, line-aware option access.

Every error raised here is a CfgError whose message starts with ``file:line``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Iterable

from deepthings.errors import CfgError


@dataclass
class Section:
    """One ``[type]`` section: its options (key -> (value, line)) and where it starts."""

    type: str
    line: int
    cfg_path: str
    options: dict[str, tuple[str, int]] = field(default_factory=dict)
    used: set[str] = field(default_factory=set)
    index: int | None = None  # layer index once known ([net] has none)

    def where(self, key: str | None = None) -> str:
        """``file:line`` of the option ``key`` (or of the section header)."""
        line = self.options[key][1] if key is not None and key in self.options else self.line
        return f"{self.cfg_path}:{line}"

    def error(self, msg: str, key: str | None = None) -> CfgError:
        """A CfgError naming file:line (of ``key`` if given), the layer index and type."""
        layer = "" if self.index is None else f"layer {self.index} "
        return CfgError(f"{self.where(key)}: {layer}[{self.type}] {msg}")

    def has(self, key: str) -> bool:
        """Whether the section sets ``key``."""
        return key in self.options

    def _raw(self, key: str, default: object) -> str | None:
        self.used.add(key)
        if key in self.options:
            return self.options[key][0]
        if default is _REQUIRED:
            raise self.error(f"missing required key '{key}'")
        return None

    def get_str(self, key: str, default: object = None) -> str:
        """String option; required when ``default`` is None."""
        raw = self._raw(key, default if default is not None else _REQUIRED)
        return raw if raw is not None else str(default)

    def get_int(
        self, key: str, default: object = None, *, min_value: int | None = None
    ) -> int:
        """Integer option (``2.0`` accepted, ``2.5`` not); required when ``default`` is None."""
        raw = self._raw(key, _REQUIRED if default is None else default)
        if raw is None:
            value = int(default)  # type: ignore[call-overload]
        else:
            try:
                value = int(raw.strip())
            except ValueError:
                try:
                    fv = float(raw.strip())
                except ValueError:
                    raise self.error(f"'{key}' must be an integer, got {raw!r}", key) from None
                # Darknet reads ints with atoi; accept "2.0" but not "2.5".
                if not math.isfinite(fv) or fv != int(fv):
                    raise self.error(f"'{key}' must be an integer, got {raw!r}", key) from None
                value = int(fv)
        if min_value is not None and value < min_value:
            raise self.error(f"'{key}' must be >= {min_value}, got {value}", key)
        return value

    def get_float(self, key: str, default: float | None = None) -> float:
        """Finite float option; required when ``default`` is None."""
        raw = self._raw(key, _REQUIRED if default is None else default)
        if raw is None:
            return float(default)  # type: ignore[arg-type]
        try:
            value = float(raw.strip())
        except ValueError:
            raise self.error(f"'{key}' must be a number, got {raw!r}", key) from None
        if not math.isfinite(value):
            raise self.error(f"'{key}' must be finite, got {raw!r}", key)
        return value

    def get_int_list(self, key: str, default: list[int] | None = None) -> list[int]:
        """Comma-separated integers (non-empty); required when ``default`` is None."""
        raw = self._raw(key, _REQUIRED if default is None else default)
        if raw is None:
            return list(default or [])
        out = []
        for part in _split_list(raw):
            try:
                out.append(int(part))
            except ValueError:
                raise self.error(f"'{key}' must be a list of integers, got {raw!r}", key) from None
        if not out:
            raise self.error(f"'{key}' is empty", key)
        return out

    def get_float_list(self, key: str, default: list[float] | None = None) -> list[float]:
        """Comma-separated finite floats; required when ``default`` is None."""
        raw = self._raw(key, _REQUIRED if default is None else default)
        if raw is None:
            return list(default or [])
        out = []
        for part in _split_list(raw):
            try:
                v = float(part)
            except ValueError:
                raise self.error(f"'{key}' must be a list of numbers, got {raw!r}", key) from None
            if not math.isfinite(v):
                raise self.error(f"'{key}' must hold finite numbers, got {raw!r}", key)
            out.append(v)
        return out


_REQUIRED = object()


def _split_list(raw: str) -> list[str]:
    return [p.strip() for p in raw.split(",") if p.strip()]


def parse_cfg(text: str, cfg_path: str = "<string>") -> list[Section]:
    """Split cfg text into sections in file order; the first must be ``[net]``/``[network]``.

    Comments start with ``#`` or ``;``; blank lines are ignored; keys are case-sensitive as in
    Darknet, whitespace around keys and values is dropped.
    """
    sections: list[Section] = []
    for lineno, raw_line in enumerate(text.splitlines(), start=1):
        line = raw_line.strip()
        if not line or line[0] in "#;":
            continue
        if line[0] == "[":
            if not line.endswith("]") or len(line) < 3:
                raise CfgError(f"{cfg_path}:{lineno}: malformed section header {line!r}")
            name = line[1:-1].strip()
            if not name:
                raise CfgError(f"{cfg_path}:{lineno}: empty section name")
            sections.append(Section(type=name, line=lineno, cfg_path=cfg_path))
            continue
        if "=" not in line:
            raise CfgError(f"{cfg_path}:{lineno}: expected 'key=value', got {line!r}")
        if not sections:
            raise CfgError(f"{cfg_path}:{lineno}: option {line!r} before the first [section]")
        key, value = line.split("=", 1)
        key = key.strip()
        # Darknet strips all whitespace of an option line; values here never need inner blanks.
        value = "".join(value.split())
        if not key:
            raise CfgError(f"{cfg_path}:{lineno}: option without a key: {line!r}")
        sections[-1].options[key] = (value, lineno)
    if not sections:
        raise CfgError(f"{cfg_path}:1: no sections found (empty cfg?)")
    if sections[0].type not in ("net", "network"):
        first = sections[0]
        raise CfgError(
            f"{cfg_path}:{first.line}: the first section must be [net], got [{first.type}]"
        )
    if len(sections) < 2:
        raise CfgError(f"{cfg_path}:{sections[0].line}: the cfg has a [net] section but no layers")
    return sections


def section_types(sections: Iterable[Section]) -> list[str]:
    """The layer types of the sections (for messages and tests)."""
    return [s.type for s in sections]
