"""The Train tab's form, built from the config schema (RunConfig's fields and their descriptions), and the way back:
the values a person typed -> `--set` assignments -> the same validated RunConfig `tunesmith train` builds.

Only keys changed from their defaults become assignments, so "Copy as command" shows a short line that means
exactly what the UI runs (a test builds both and compares them).
"""

from __future__ import annotations

import shlex
import typing
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel

from tunesmith import config
from tunesmith.config import RunConfig
from tunesmith.errors import TunesmithError

# Shown open; the rest of the schema folds away under "Advanced", one group per section.
BASIC = ("model", "train.method", "train.epochs", "train.learning_rate", "lora.r", "template.max_length",
         "train.batch_size", "train.max_steps")
# Set by the UI itself: the file picked in the Data tab (and its role and field maps), the runs folder, the run name.
# data.eval and continue_from name files: the CLI takes them; the UI reads only what is under its runs folder.
NOT_IN_FORM = ("name", "output_dir", "data.train", "data.roles", "data.columns", "data.eval", "continue_from")


@dataclass(frozen=True)
class Field:
    """One config key as a form field: `kind` is choice | bool | int | float | text | yaml."""

    key: str
    kind: str
    default: Any
    description: str
    choices: tuple[str, ...] = ()

    @property
    def section(self) -> str:
        return self.key.split(".")[0] if "." in self.key else "run"

    def shown(self) -> Any:
        """The default as the form shows it (YAML text for lists, maps and mixed types)."""
        if self.kind == "yaml":
            return "" if self.default is None else _flow(self.default)
        return "" if self.default is None and self.kind == "text" else self.default

    def parse(self, value: Any) -> Any:
        """The form's value back as a config value; TunesmithError naming the key when it is not one."""
        if self.kind == "yaml":
            try:
                return yaml.safe_load(str(value)) if str(value).strip() else None
            except yaml.YAMLError as err:
                raise TunesmithError(f"{self.key}: {value!r} is not a value", where="the Train form",
                                     fix=f"write it as YAML, e.g. {_flow(self.default)}") from err
        if self.kind == "int" and value is not None:
            return int(value)
        if self.kind == "text" and value == "" and self.default is None:
            return None
        return value


def _flow(value: Any) -> str:
    return yaml.safe_dump(value, default_flow_style=True, allow_unicode=True).strip().removesuffix("\n...")


def _kind(annotation: Any) -> tuple[str, tuple[str, ...]]:
    if typing.get_origin(annotation) is typing.Literal:
        return "choice", tuple(str(a) for a in typing.get_args(annotation))
    args = [a for a in typing.get_args(annotation) if a is not type(None)]
    plain = args[0] if len(args) == 1 else annotation  # `int | None` is an int field left empty
    if plain is bool:
        return "bool", ()
    if plain in (int, float):  # optional numbers are text (empty = unset): a number box cannot be empty
        return (plain.__name__, ()) if plain is annotation else ("yaml", ())
    if plain is str:
        return "text", ()
    return "yaml", ()


def fields() -> list[Field]:
    """Every config key the form offers, basic ones first, in the schema's order."""
    out: list[Field] = []

    def walk(model: type[BaseModel], prefix: str) -> None:
        for name, info in model.model_fields.items():
            ann = info.annotation
            if isinstance(ann, type) and issubclass(ann, BaseModel):
                walk(ann, f"{prefix}{name}.")
                continue
            key = prefix + name
            if key in NOT_IN_FORM:
                continue
            kind, choices = _kind(ann)
            default = info.default_factory() if info.default_factory else info.default
            out.append(Field(key, kind, default, info.description or "", choices))

    walk(RunConfig, "")
    return sorted(out, key=lambda f: f.key not in BASIC)


def overrides(form: list[Field], values: list[Any]) -> list[str]:
    """`--set` assignments for the values that differ from their defaults."""
    out = []
    for f, value in zip(form, values, strict=True):
        parsed = f.parse(value)
        if parsed != f.default and not (f.kind == "float" and parsed is not None and f.default is not None
                                        and float(parsed) == float(f.default)):
            out.append(config.override(f.key, parsed))
    return out


def roles_overrides(roles: dict[str, str], key: str = "data.roles") -> list[str]:
    """The Data tab's role map (or field map: key data.columns) as one assignment (one flow mapping: a name may
    hold a dot)."""
    return [config.override(key, roles)] if roles else []


def build(root: Path, data: Path, name: str, sets: list[str]) -> RunConfig:
    """The run's config, built the way `tunesmith train --data DATA --name NAME --output-dir ROOT --set ...` does.
    A reward function of the user's is refused: it is code, named by whoever reaches the board (the plan would read
    the file; only the shell's --trust-code runs it)."""
    cfg = config.build(None, [config.override("name", name), config.override("output_dir", str(root.resolve())),
                              *sets], [data])
    own = [n for n in cfg.grpo.rewards if n not in config.REWARDS] if isinstance(cfg.grpo.rewards, list) else []
    if own:
        raise TunesmithError(f"grpo.rewards: {', '.join(own)}: the board takes the built-in rewards only "
                             f"({', '.join(config.REWARDS)}): a function of yours is code", where="the Train tab",
                             fix="train it from the shell: tunesmith train CONFIG --trust-code")
    return cfg


def command(root: Path, data: Path, name: str, sets: list[str]) -> str:
    """The equivalent command line."""
    argv = ["tunesmith", "train", "--data", str(data), "--name", name, "--output-dir", str(root.resolve())]
    for assignment in sets:
        argv += ["--set", assignment]
    return shlex.join(argv)


def plan_text(cfg: RunConfig) -> tuple[str, bool]:
    """What `tunesmith plan` prints for `cfg` (data counts, the plan, the template checks), and whether it passed.
    Nothing is written and no weights load."""
    from tunesmith import pipeline

    lines: list[str] = []
    try:
        pipeline.plan(cfg, say=lines.append)
    except TunesmithError as err:
        return "\n".join([*lines, "error: " + err.render()]), False
    return "\n".join(lines), True
