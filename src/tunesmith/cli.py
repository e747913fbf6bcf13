"""The command line: a thin shell, one short function per verb, each calling one library function.

A TunesmithError prints as a clear message with exit code 2 and no traceback (unless --debug).
"""

from __future__ import annotations

import os
import sys
from importlib import resources
from pathlib import Path
from typing import Annotated, Optional

import typer

from tunesmith.errors import EXIT_USER_ERROR, TunesmithError

app = typer.Typer(add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False,
                  help="Instruction-tune a small LLM on your own data and see honestly whether it helped.")
_state = {"debug": False}

Overwrite = Annotated[bool, typer.Option("--overwrite", help="replace an existing run folder")]
Sets = Annotated[Optional[list[str]], typer.Option("--set", help="override a config key: --set train.epochs=1")]
Name = Annotated[Optional[str], typer.Option("--name", help="run name (folder under output_dir)")]
Strict = Annotated[bool, typer.Option("--strict", help="fail on any unusable data row instead of skipping it")]
Model = Annotated[Optional[str], typer.Option(
    "--model", help="default | a model folder | a .gguf file | a hub id in your HF cache")]


@app.callback()
def _root(debug: Annotated[bool, typer.Option("--debug", help="show tracebacks")] = False) -> None:
    _state["debug"] = debug


def _say(msg: str) -> None:
    typer.echo(msg, err=True)


def _run(config_path: Path, overwrite: bool, sets: list[str] | None, name: str | None, model: str | None,
         strict: bool) -> None:
    from tunesmith import config, pipeline

    overrides = (list(sets or []) + ([f"name={name}"] if name else []) + ([f"model={model}"] if model else [])
                 + (["data.strict=true"] if strict else []))
    cfg = config.load(config_path, overrides)
    s = pipeline.run(cfg, overwrite=overwrite, say=_say)
    m = s.main_metric
    typer.echo(f"\nreport: {s.report}")
    typer.echo(f"eval loss      {s.before.eval_loss:.4f} -> {s.after.eval_loss:.4f}")
    typer.echo(f"{m:<14} {s.before.metrics[m]:.2f} -> {s.after.metrics[m]:.2f}   "
               f"(bleu {s.before.metrics['bleu']:.2f} -> {s.after.metrics['bleu']:.2f})")
    d = s.difference
    typer.echo(f"sentence chrF  {d.mean:+.2f} [{d.low:+.2f}, {d.high:+.2f}] (95% paired bootstrap over {d.rows} "
               f"rows): {d.verdict}")
    typer.echo(f"stopped by itself {s.before.metrics['stopped_share']:.0%} -> {s.after.metrics['stopped_share']:.0%}")
    typer.echo(f"training {s.train_seconds:.0f} s, whole run {s.wall_seconds:.0f} s")


@app.command()
def train(config_path: Annotated[Path, typer.Argument(metavar="CONFIG", help="a YAML run config")],
          overwrite: Overwrite = False, set_: Sets = None, name: Name = None, model: Model = None,
          strict: Strict = False) -> None:
    """Run a config end to end: data, base eval, LoRA training, tuned eval, report.html."""
    _run(config_path, overwrite, set_, name, model, strict)


@app.command()
def plan(config_path: Annotated[Path, typer.Argument(metavar="CONFIG", help="a YAML run config")],
         set_: Sets = None, model: Model = None) -> None:
    """Dry run: validate data and config, run the template checks, print what training would do."""
    from tunesmith import config, pipeline

    overrides = list(set_ or []) + ([f"model={model}"] if model else [])
    pipeline.plan(config.load(config_path, overrides), say=typer.echo)


@app.command()
def demo(overwrite: Overwrite = False, set_: Sets = None, name: Name = None, model: Model = None) -> None:
    """The shipped demo: LoRA-tune the embedded SmolLM2 on the bundled counselling data."""
    with resources.as_file(resources.files("tunesmith") / "configs" / "demo.yaml") as path:
        _run(path, overwrite, set_, name, model, strict=False)


def _pairs(items: list[str] | None, flag: str) -> dict[str, str]:
    out = {}
    for item in items or []:
        key, sep, value = item.partition("=")
        if not sep or not key.strip() or not value.strip():
            raise TunesmithError(f"bad {flag} {item!r}", fix=f"write it as {flag} NAME=VALUE, e.g. "
                                 + ("--role therapist=assistant" if flag == "--role" else "--column prompt=question"))
        out[key.strip()] = value.strip()
    return out


@app.command()
def inspect(paths: Annotated[list[Path], typer.Argument(metavar="PATH...", help="files, folders or globs")],
            model: Annotated[Optional[str], typer.Option("--model", help="also measure lengths in tokens")] = None,
            as_json: Annotated[bool, typer.Option("--json", help="print one JSON object")] = False,
            format: Annotated[str, typer.Option("--format", help="auto, or force a format")] = "auto",
            role: Annotated[Optional[list[str]], typer.Option("--role", help="NAME=ROLE, e.g. therapist=assistant")] = None,
            column: Annotated[Optional[list[str]], typer.Option("--column", help="FIELD=YOURS, e.g. prompt=q")] = None,
            system: Annotated[Optional[str], typer.Option("--system", help="add or replace the system turn")] = None,
            encoding: Annotated[str, typer.Option("--encoding", help="auto, or a codec name")] = "auto",
            strict: Annotated[bool, typer.Option("--strict", help="fail on any unusable row")] = False,
            max_length: Annotated[int, typer.Option("--max-length", help="training max length in tokens")] = 384,
            ) -> None:
    """Show how tunesmith reads a data set: format, counts, skipped rows, lengths, samples. No training."""
    import json

    from tunesmith.config import DataConfig
    from tunesmith.data.summary import render, summarize, to_json

    cfg = DataConfig(train=list(paths), format=format, roles=_pairs(role, "--role"),
                     columns=_pairs(column, "--column"), system=system, encoding=encoding, strict=strict)
    summary = summarize(list(paths), cfg, model=model, max_length=max_length)
    typer.echo(json.dumps(to_json(summary), ensure_ascii=False, indent=2) if as_json else render(summary))
    if not summary.usable:
        sys.exit(EXIT_USER_ERROR)


TRAINING_VERBS = {"train", "demo"}


def _preload_tcmalloc() -> None:
    """Re-run a training verb with tcmalloc preloaded where the system has it (Debian: libgoogle-perftools4).

    PyTorch's CPU training allocates and frees large tensors every step; glibc malloc makes that the
    bottleneck here: bench/train_throughput.py measured 106 -> 163 tokens/s (1.55x) on the demo's LoRA.
    Set TUNESMITH_NO_TCMALLOC=1 to opt out.
    """
    if not TRAINING_VERBS & set(sys.argv[1:]) or os.environ.get("TUNESMITH_NO_TCMALLOC"):
        return
    if "tcmalloc" in os.environ.get("LD_PRELOAD", ""):
        return
    from tunesmith.train import tcmalloc_library

    lib = tcmalloc_library()
    if lib is None:
        return
    env = {**os.environ, "LD_PRELOAD": ":".join(filter(None, [lib, os.environ.get("LD_PRELOAD")]))}
    os.execve(sys.executable, [sys.executable, "-m", "tunesmith", *sys.argv[1:]], env)


@app.command()
def preview(paths: Annotated[list[Path], typer.Argument(metavar="DATA...", help="files, folders or globs")],
            model: Annotated[str, typer.Option("--model", help="whose chat template to render with")] = "default",
            n: Annotated[int, typer.Option("-n", help="rows to show")] = 3,
            max_length: Annotated[int, typer.Option("--max-length")] = 384,
            supervise: Annotated[str, typer.Option("--supervise", help="assistant | last | all")] = "assistant",
            chat_template: Annotated[str, typer.Option("--chat-template", help="auto | plain | chatml")] = "auto",
            role: Annotated[Optional[list[str]], typer.Option("--role", help="NAME=ROLE")] = None,
            column: Annotated[Optional[list[str]], typer.Option("--column", help="FIELD=YOURS")] = None,
            ) -> None:
    """Show rows exactly as training sees them: supervised tokens highlighted, token counts, template checks."""
    from rich.console import Console
    from rich.text import Text

    from tunesmith import preview as pv
    from tunesmith.config import DataConfig, TemplateConfig
    from tunesmith.template import describe

    data_cfg = DataConfig(train=list(paths), roles=_pairs(role, "--role"), columns=_pairs(column, "--column"))
    tcfg = TemplateConfig(max_length=max_length, supervise=supervise, chat_template=chat_template)
    result = pv.preview(list(paths), data_cfg, tcfg, model, n)
    console = Console(highlight=False)
    color = console.is_terminal
    for note in result.notices:
        typer.echo(f"notice: {note}")
    for ex, parts in result.rows:
        typer.echo(f"--- {ex.source}: {len(ex.input_ids)} tokens, {ex.supervised_tokens} supervised")
        if color:
            console.print(Text.assemble(*((t, "black on green") if sup else (t, "") for t, sup in parts)))
        else:  # brackets survive a pipe or a file
            typer.echo("".join(f"[[{t}]]" if sup else t for t, sup in parts))
    typer.echo("")
    for line in describe(result.checks):
        typer.echo(f"check: {line}")
    if not result.checks.ok:
        sys.exit(EXIT_USER_ERROR)


@app.command()
def tokens(model: Annotated[str, typer.Option("--model")] = "default",
           add: Annotated[Optional[list[str]], typer.Option("--add", help="add a special token (repeatable)")] = None,
           out: Annotated[Optional[Path], typer.Option("--out", help="where --add saves the resized model")] = None,
           csv_path: Annotated[Optional[Path], typer.Option("--csv", help="write the special tokens as CSV")] = None,
           ) -> None:
    """Special tokens with ids, the chat template, vocabulary size, tokens per character (EN/KO)."""
    from tunesmith import preview as pv

    if add:
        if out is None:
            raise TunesmithError("--add needs --out DIR for the resized model", fix="add --out models/with-tokens")
        path = pv.add_tokens(model, add, out)
        typer.echo(f"saved model and tokenizer with {len(add)} added token(s) to {path}")
        model = str(path)
    rep = pv.tokenizer_report(model)
    typer.echo(f"model: {rep['model']}\nvocabulary: {rep['vocab_size']} tokens")
    for name, (i, tok) in rep["special_tokens"].items():
        typer.echo(f"  {name:<28} {tok!r:<24} id {i}")
    typer.echo(f"added tokens: {len(rep['added_tokens'])}")
    typer.echo("tokens per character: " + ", ".join(f"{k} {v}" for k, v in rep["tokens_per_char"].items()))
    typer.echo("chat template:\n" + (rep["chat_template"] or "(none: tunesmith falls back to its plain template)"))
    if csv_path:
        pv.write_csv(rep, csv_path)
        typer.echo(f"wrote {csv_path}")


def main() -> None:
    _preload_tcmalloc()
    # Standalone mode lets typer turn usage errors (bad flag values) into exit code 2 itself.
    try:
        app()
    except TunesmithError as err:
        if _state["debug"]:
            raise
        typer.echo(f"error: {err.render()}", err=True)
        sys.exit(EXIT_USER_ERROR)
