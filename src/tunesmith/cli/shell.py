"""The command line's shared parts: the typer app, the options several verbs take, and the helpers that turn
flags into config (one validation for flags and config keys alike). The verbs live in runs.py, data.py and
models.py; __init__.main runs them.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Optional

import typer

from tunesmith import runtime
from tunesmith.errors import TunesmithError

app = typer.Typer(add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False,
                  help="Instruction-tune a small LLM on your own data and see honestly whether it helped.")
_state: dict[str, Any] = {"debug": False, "training": False, "verb": None}

Overwrite = Annotated[bool, typer.Option("--overwrite", help="replace an existing run folder")]
Sets = Annotated[Optional[list[str]], typer.Option("--set", help="override a config key: --set train.epochs=1")]
Name = Annotated[Optional[str], typer.Option("--name", help="run name (folder under output_dir)")]
Strict = Annotated[bool, typer.Option("--strict", help="fail on any unusable data row instead of skipping it")]
Model = Annotated[Optional[str], typer.Option(
    "--model", help="default | a model folder | a .gguf file | a hub id in your HF cache")]


@app.callback()
def _root(ctx: typer.Context,
          debug: Annotated[bool, typer.Option("--debug", help="show tracebacks")] = False) -> None:
    _state["debug"], _state["verb"] = debug, ctx.invoked_subcommand


# The data settings an error's `suggest` names, as each verb takes them (the library knows only config keys).
DATA_FLAGS = {"roles": "--role", "columns": "--column", "format": "--format", "encoding": "--encoding",
              "system": "--system"}
SET_VERBS = ("train", "plan")  # verbs whose --set reaches data.*


def typed_fix(verb: str | None, suggest: dict[str, Any] | None) -> str | None:
    """An error's suggested settings as flags of the verb that printed it, e.g. `--column prompt=Q`."""
    import shlex

    import yaml

    if not suggest:
        return None
    parts = []
    for key, value in suggest.items():
        if verb in ("inspect", "preview") and key in DATA_FLAGS:
            pairs = value.items() if isinstance(value, dict) else [(None, value)]
            parts += [f"{DATA_FLAGS[key]} {shlex.quote(str(v) if k is None else f'{k}={v}')}" for k, v in pairs]
        elif verb in SET_VERBS:
            flow = yaml.safe_dump(value, default_flow_style=True, allow_unicode=True, width=10**6,
                                  sort_keys=False).strip()
            parts.append(f"--set {shlex.quote(f'data.{key}={flow.removesuffix(chr(10) + chr(46) * 3)}')}")
        else:
            return None
    return f"tunesmith {verb} ... {' '.join(parts)}"


def _say(msg: str) -> None:
    typer.echo(msg, err=True)


Config = Annotated[Optional[Path], typer.Argument(metavar="[CONFIG]", help="a YAML run config (tunesmith init "
                                                   "writes one); optional with --data")]
DataOpt = Annotated[Optional[list[Path]], typer.Option("--data", help="training data file(s); replaces data.train")]
EvalData = Annotated[Optional[list[Path]], typer.Option("--eval-data", help="explicit eval file(s)")]
OutputDir = Annotated[Optional[Path], typer.Option("--output-dir", help="where run folders go (default runs/)")]
Epochs = Annotated[Optional[float], typer.Option("--epochs")]
BatchSize = Annotated[Optional[int], typer.Option("--batch-size", help="rows per step per process")]
Lr = Annotated[Optional[float], typer.Option("--lr", help="learning rate")]
LoraR = Annotated[Optional[int], typer.Option("--lora-r", help="LoRA rank")]
Load8 = Annotated[bool, typer.Option("--load-8bit", help="load the base model in 8 bits (CUDA + bitsandbytes)")]
Load4 = Annotated[bool, typer.Option("--load-4bit", help="QLoRA: load the base model in 4 bits (CUDA + bitsandbytes)")]
ContinueFrom = Annotated[Optional[Path], typer.Option(
    "--continue-from", help="a finished run folder: start a new run from its weights (e.g. on new data)")]


def _training() -> None:
    """The training verbs start here: with tcmalloc preloaded (a re-exec, see runtime.preload_tcmalloc), and an
    interrupt then says how to resume."""
    runtime.preload_tcmalloc()
    _state["training"] = True


def _flag_overrides(**flags: object) -> list[str]:
    """The common flags as `--set` assignments, so flags and config keys go through one validation."""
    keys = {"name": "name", "model": "model", "output_dir": "output_dir", "epochs": "train.epochs",
            "batch_size": "train.batch_size", "lr": "train.learning_rate", "lora_r": "lora.r",
            "continue_from": "continue_from"}
    from tunesmith.config import override, paths_override

    # Quoted as YAML: `--name 'a: b'` or `--model '[x'` must arrive as the text typed, not as a mapping or list.
    out = [override(keys[k], Path(v).resolve() if isinstance(v, Path) else v) for k, v in flags.items()
           if k in keys and v is not None]
    if flags.get("eval_data"):
        out.append(paths_override("data.eval", flags["eval_data"]))
    if flags.get("load_8bit") and flags.get("load_4bit"):
        raise TunesmithError("--load-8bit and --load-4bit exclude each other", fix="pick one")
    out += ["train.load_in=8bit"] * bool(flags.get("load_8bit")) + ["train.load_in=4bit"] * bool(flags.get("load_4bit"))
    return out + ["data.strict=true"] * bool(flags.get("strict"))


def _flags(*same: str, **renamed: str) -> dict[str, str]:
    """Config field -> the flag that sets it, read from this verb's own options (so an error names what the user
    typed, and a renamed option cannot drift from its map): `same` fields share the option's name, `renamed`
    maps a field to the option's parameter (max_rows="limit")."""
    from typer.main import get_current_context  # typer 0.29 runs its own copy of click

    opts = {p.name: p.opts[0] for p in get_current_context().command.params if p.opts}
    return {field: opts[param] for field, param in {**{f: f for f in same}, **renamed}.items()}


def _config(config_path: Path | None, sets: list[str] | None, data: list[Path] | None, **flags: object):
    from tunesmith import config

    return config.build(config_path, _flag_overrides(**flags) + list(sets or []), list(data or []))


def _print_summary(s) -> None:  # noqa: ANN001
    t = s.training
    typer.echo(f"\nreport: {s.report} (and its Markdown twin)")
    loss = "eval loss" if s.preference is None else "held-out preference loss"
    start, best = t.start_eval_loss, t.best_eval_loss
    if t.best_eval_reward is not None:  # grpo
        loss, start, best = "held-out reward (grpo)", t.start_eval_reward, t.best_eval_reward
    typer.echo(f"{loss} {start:.4f} -> {best:.4f} (kept step {t.best_step}, epoch "
               f"{t.best_epoch:g}{'; stopped early' if t.stopped_early else ''})"
               + ("; not above the start: training did not raise it" if t.best_eval_reward is not None
                  and best <= start else ""))
    if s.preference is not None and len(s.preference.models) > 1:
        from tunesmith.prefeval import verdict

        typer.echo(verdict(s.preference, s.preference.models[1].label))
    if t.overfitting:
        typer.echo(f"overfitting: {t.overfitting}")
    _print_eval(s.evaluation)
    typer.echo(f"training {s.train_seconds:.0f} s, whole run {s.wall_seconds:.0f} s")


def _print_eval(ev) -> None:  # noqa: ANN001
    from tunesmith.report import metrics_table

    table = metrics_table(ev)
    widths = [max(len(r[i]) for r in [table.header, *table.rows]) for i in range(len(table.header))]
    for row in [table.header, *table.rows]:
        typer.echo("  ".join(c.ljust(w) for c, w in zip(row, widths)).rstrip())
    if ev.retention is not None:
        from tunesmith import retention

        for m in ev.retention.models[1:]:
            typer.echo(retention.verdict(ev.retention, m.label))

Run = Annotated[Path, typer.Argument(metavar="RUN", help="a run folder, e.g. runs/demo")]
Target = Annotated[str, typer.Argument(metavar="RUN|MODEL", help="a run folder (its tuned model), an export "
                                       "folder, or a model spec: default, a folder, a .gguf file, a hub id")]
MaxNew = Annotated[Optional[int], typer.Option("--max-new-tokens", help="default: the run's eval.max_new_tokens "
                                                "(96 for a model that is not a run)")]
Temperature = Annotated[Optional[float], typer.Option("--temperature", help="0 = greedy (the default)")]


def _model_list(text: str, example: str) -> list[str]:
    """`--models a,b`: the names in order; an empty list is an error here, not an empty table later."""
    names = [m.strip() for m in text.split(",") if m.strip()]
    if not names:
        raise TunesmithError("it names no model", where=f"--models {text!r}",
                             fix=f"pass comma-separated model names, e.g. --models {example}")
    return names


def _pairs(items: list[str] | None, flag: str) -> dict[str, str]:
    out = {}
    for item in items or []:
        key, sep, value = item.partition("=")
        if not sep or not key.strip() or not value.strip():
            raise TunesmithError(f"bad {flag} {item!r}", fix=f"write it as {flag} NAME=VALUE, e.g. "
                                 + ("--role therapist=assistant" if flag == "--role" else "--column prompt=question"))
        out[key.strip()] = value.strip()
    return out
