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

from tunesmith import runtime
from tunesmith.errors import EXIT_USER_ERROR, TunesmithError

app = typer.Typer(add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False,
                  help="Instruction-tune a small LLM on your own data and see honestly whether it helped.")
_state = {"debug": False, "training": False}

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
    typer.echo(f"eval loss {t.start_eval_loss:.4f} -> {t.best_eval_loss:.4f} (kept step {t.best_step}, epoch "
               f"{t.best_epoch:g}{'; stopped early' if t.stopped_early else ''})")
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


@app.command()
def train(config_path: Config = None, overwrite: Overwrite = False, set_: Sets = None, name: Name = None,
          model: Model = None, data: DataOpt = None, eval_data: EvalData = None, output_dir: OutputDir = None,
          epochs: Epochs = None, batch_size: BatchSize = None, lr: Lr = None, lora_r: LoraR = None,
          load_8bit: Load8 = False, load_4bit: Load4 = False, continue_from: ContinueFrom = None,
          strict: Strict = False) -> None:
    """Run end to end: data, plan, training, base vs tuned eval, report. Re-run an unfinished run to resume it.

    \b
    Examples:
      tunesmith train --data my.jsonl
      tunesmith train my.yaml --epochs 5 --lr 1e-4 --lora-r 8
      tunesmith train my.yaml --set lora.dora=true --name dora-run
      tunesmith train my.yaml    # again: resumes
    """
    _training()
    from tunesmith import pipeline

    cfg = _config(config_path, set_, data, name=name, model=model, eval_data=eval_data, output_dir=output_dir,
                  epochs=epochs, batch_size=batch_size, lr=lr, lora_r=lora_r, load_8bit=load_8bit,
                  load_4bit=load_4bit, continue_from=continue_from, strict=strict)
    summary = pipeline.run(cfg, overwrite=overwrite, say=_say)
    if summary is not None:  # None on the non-zero ranks of a multi-process run
        _print_summary(summary)


@app.command()
def plan(config_path: Config = None, set_: Sets = None, model: Model = None, data: DataOpt = None,
         eval_data: EvalData = None, epochs: Epochs = None, batch_size: BatchSize = None, lr: Lr = None,
         lora_r: LoraR = None, load_8bit: Load8 = False, load_4bit: Load4 = False) -> None:
    """Dry run: validate data and config, run the template checks, print what training would do and cost.

    \b
    Examples:
      tunesmith plan my.yaml
      tunesmith plan --data my.jsonl --model default --set template.max_length=512
    """
    from tunesmith import pipeline

    cfg = _config(config_path, set_, data, model=model, eval_data=eval_data, epochs=epochs,
                  batch_size=batch_size, lr=lr, lora_r=lora_r, load_8bit=load_8bit, load_4bit=load_4bit)
    pipeline.plan(cfg, say=typer.echo)


@app.command()
def init(data: Annotated[Optional[list[Path]], typer.Option("--data", help="your data file(s)")] = None,
         model: Annotated[str, typer.Option("--model")] = "default",
         out: Annotated[Path, typer.Option("--out", help="where to write the config")] = Path("tunesmith.yaml"),
         overwrite: Overwrite = False) -> None:
    """Write a commented config with every key at its default.

    \b
    Examples:
      tunesmith init --data my.jsonl --out my.yaml
    """
    from tunesmith import config_docs

    if out.is_dir():
        raise TunesmithError("--out is a folder; it names the config file to write", where=f"--out {out}",
                             fix=f"pass a file name, e.g. --out {out / 'tunesmith.yaml'}")
    if out.exists() and not overwrite:
        raise TunesmithError(f"{out} already exists", fix="pass --overwrite, or --out another.yaml")
    created = not out.parent.exists()
    try:
        out.parent.mkdir(parents=True, exist_ok=True)  # `--out configs/new/run.yaml` in a fresh checkout
        rel = [os.path.relpath(Path(p).resolve(), out.resolve().parent) for p in data or []]
        out.write_text(config_docs.commented_yaml(rel, model), encoding="utf-8")
    except OSError as err:
        raise TunesmithError(f"cannot write the config: {err.strerror}", where=f"--out {out}",
                             fix="pass --out in a folder you can write to") from None
    typer.echo(f"wrote {out}{f' (created the folder {out.parent})' if created else ''}; "
               f"check it with: tunesmith plan {out}")


@app.command()
def demo(overwrite: Overwrite = False, set_: Sets = None, name: Name = None, model: Model = None) -> None:
    """The shipped demo: LoRA-tune the embedded SmolLM2 on the bundled counselling data.

    \b
    Examples:
      tunesmith demo
      tunesmith demo --overwrite --set train.epochs=1
    """
    _training()
    from tunesmith import pipeline

    with resources.as_file(resources.files("tunesmith") / "configs" / "demo.yaml") as path:
        summary = pipeline.run(_config(path, set_, None, name=name, model=model), overwrite=overwrite, say=_say)
    if summary is not None:
        _print_summary(summary)


Run = Annotated[Path, typer.Argument(metavar="RUN", help="a run folder, e.g. runs/demo")]


@app.command("eval")
def eval_(run: Run,
          data: Annotated[Optional[Path], typer.Option("--data", help="evaluate on this file instead of the run's "
                                                       "held-out rows (written to eval/<file name>/)")] = None,
          limit: Annotated[Optional[int], typer.Option("--limit", help="at most N rows")] = None,
          models_: Annotated[str, typer.Option("--models", help="comma-separated: base, tuned, another run "
                                               "folder, or a model spec; each is compared with the first")]
          = "base,tuned",
          max_new_tokens: Annotated[Optional[int], typer.Option("--max-new-tokens")] = None,
          temperature: Annotated[Optional[float], typer.Option("--temperature", help="0 = greedy")] = None,
          top_p: Annotated[Optional[float], typer.Option("--top-p")] = None,
          repetition_penalty: Annotated[Optional[float], typer.Option("--repetition-penalty")] = None,
          embedder: Annotated[Optional[str], typer.Option("--embedder", help="default, none, or a "
                                                          "sentence-transformers folder/name")] = None,
          batch_size: Annotated[Optional[int], typer.Option("--batch-size", help="rows generated together")] = None,
          retention: Annotated[Optional[str], typer.Option("--retention", help="auto, on or off: the check on "
                                                           "general text outside the task")] = None,
          precision: Annotated[Optional[str], typer.Option("--precision", help="auto, fp32, bf16 or fp16: the "
                                                           "weights' dtype (auto = bf16 where it runs natively)")]
          = None,
          judge_url: Annotated[Optional[str], typer.Option("--judge-url", help="OpenAI-compatible endpoint; the "
                                                           "key comes from TUNESMITH_JUDGE_KEY or OPENAI_API_KEY")]
          = None,
          judge_model: Annotated[Optional[str], typer.Option("--judge-model")] = None,
          fresh: Annotated[bool, typer.Option("--fresh", help="discard earlier generations")] = False) -> None:
    """Generate with base and tuned (or any models) on held-out rows; metrics with 95% CIs; rewrite the report.

    \b
    Examples:
      tunesmith eval runs/demo
      tunesmith eval runs/demo --data other.jsonl --limit 50 --models base,tuned,runs/other
      tunesmith eval runs/demo --fresh --temperature 0.7 --top-p 0.9
    """
    from tunesmith import pipeline
    from tunesmith.config import EvalConfig, section

    flags = _flags("max_new_tokens", "temperature", "top_p", "repetition_penalty", "embedder", "batch_size",
                   "retention", "precision", max_rows="limit")
    given = {"max_rows": limit, "max_new_tokens": max_new_tokens, "temperature": temperature, "top_p": top_p,
             "repetition_penalty": repetition_penalty, "embedder": embedder, "batch_size": batch_size,
             "retention": retention, "precision": precision}
    options = {k: v for k, v in given.items() if v is not None}
    section(EvalConfig, options, where="tunesmith eval", flags=flags)  # before the run folder is opened or locked
    if bool(judge_url) != bool(judge_model):
        raise TunesmithError("--judge-url and --judge-model go together", fix="pass both, or neither")
    ev, report = pipeline.evaluate_run(run, data=data, labels=_model_list(models_, "base,tuned"), options=options,
                                       judge={"url": judge_url, "model": judge_model} if judge_url else None,
                                       fresh=fresh, say=_say)
    _print_eval(ev)
    if report is not None:
        typer.echo(f"report: {report}")


@app.command()
def report(run: Run) -> None:
    """Rebuild report.html and report.md from a run folder.

    \b
    Examples:
      tunesmith report runs/demo
    """
    from tunesmith import report as reporting

    typer.echo(f"wrote {reporting.rebuild(run, say=_say)} and its Markdown twin")


@app.command()
def compare(models_: Annotated[str, typer.Option("--models", help="comma-separated model specs, e.g. "
                                                 "a base model and its instruct version")],
            prompts: Annotated[Path, typer.Option("--prompts", help=".txt (one per line) or .jsonl with a "
                                                  "'prompt' field or messages")],
            csv_path: Annotated[Path, typer.Option("--csv", help="where to write the side-by-side CSV")]
            = Path("compare.csv"),
            max_new_tokens: Annotated[int, typer.Option("--max-new-tokens")] = 96,
            batch_size: Annotated[int, typer.Option("--batch-size")] = 8) -> None:
    """The same prompts through several models, side by side (each through its own chat template).

    \b
    Examples:
      tunesmith compare --models default,runs/demo --prompts prompts.txt --csv side.csv
    """
    from rich.console import Console
    from rich.table import Table

    from tunesmith import compare as comparing
    from tunesmith.config import EvalConfig, section
    from tunesmith.skips import block, rows_text

    eval_cfg = section(EvalConfig, {"max_new_tokens": max_new_tokens, "batch_size": batch_size},
                       where="tunesmith compare", flags=_flags("max_new_tokens", "batch_size"))
    csv_path = comparing.csv_target(csv_path)  # now, not after minutes of generation
    convs, skipped = comparing.read_prompts(prompts)
    for line in block(f"not compared: {rows_text(len(skipped))}", skipped):
        _say(line)
    specs = _model_list(models_, "default,<another model>")
    result = comparing.compare(specs, convs, eval_cfg, skipped=skipped, say=_say)
    comparing.write_csv(result, csv_path)
    table = Table("prompt", *(f"{m}\n({t})" for m, t in zip(result.models, result.templates)), show_lines=True)
    for conv, outs, stops in zip(result.prompts, result.outputs, result.stopped):
        table.add_row(conv.messages[-2].content, *(o + ("" if s else " [cut at max tokens]")
                                                   for o, s in zip(outs, stops)))
    Console(width=max(120, 40 * (len(specs) + 1))).print(table)
    typer.echo(f"wrote {csv_path} ({len(result.prompts)} prompts, {len(result.skipped)} skipped)")


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
            max_length: Annotated[str, typer.Option("--max-length", help="training max length in tokens, or "
                                                    "auto (the longest row, up to the model's context)")] = "auto",
            ) -> None:
    """Show how tunesmith reads a data set: format, counts, skipped rows, lengths, samples. No training.

    \b
    Examples:
      tunesmith inspect my.json
      tunesmith inspect corpus.json --role therapist=assistant --model default
    """
    import json

    from tunesmith.config import DataConfig, TemplateConfig, section
    from tunesmith.data.summary import render, summarize, to_json

    cfg = section(DataConfig, {"train": list(paths), "format": format, "roles": _pairs(role, "--role"),
                               "columns": _pairs(column, "--column"), "system": system, "encoding": encoding,
                               "strict": strict}, where="tunesmith inspect", flags=_flags("format", "encoding"))
    tcfg = section(TemplateConfig, {"max_length": max_length}, where="tunesmith inspect", flags=_flags("max_length"))
    summary = summarize(list(paths), cfg, model=model, max_length=tcfg.max_length)
    typer.echo(json.dumps(to_json(summary), ensure_ascii=False, indent=2) if as_json else render(summary))
    if not summary.usable:
        sys.exit(EXIT_USER_ERROR)


@app.command()
def preview(paths: Annotated[list[Path], typer.Argument(metavar="DATA...", help="files, folders or globs")],
            model: Annotated[str, typer.Option("--model", help="whose chat template to render with")] = "default",
            n: Annotated[int, typer.Option("-n", help="rows to show")] = 3,
            max_length: Annotated[str, typer.Option("--max-length", help="tokens, or auto")] = "auto",
            supervise: Annotated[str, typer.Option("--supervise", help="assistant | last | all")] = "assistant",
            chat_template: Annotated[str, typer.Option("--chat-template", help="auto | plain | chatml")] = "auto",
            role: Annotated[Optional[list[str]], typer.Option("--role", help="NAME=ROLE")] = None,
            column: Annotated[Optional[list[str]], typer.Option("--column", help="FIELD=YOURS")] = None,
            ) -> None:
    """Show rows exactly as training sees them: supervised tokens highlighted, token counts, template checks.

    \b
    Examples:
      tunesmith preview my.json -n 3
    """
    from rich.console import Console
    from rich.text import Text

    from tunesmith import preview as pv
    from tunesmith.config import DataConfig, TemplateConfig, section
    from tunesmith.skips import block, rows_text
    from tunesmith.template import describe

    if n < 0:
        raise TunesmithError(f"-n must be 0 or more (got {n})", where="tunesmith preview", fix="e.g. -n 3")
    data_cfg = section(DataConfig, {"train": list(paths), "roles": _pairs(role, "--role"),
                                    "columns": _pairs(column, "--column")}, where="tunesmith preview", flags={})
    tcfg = section(TemplateConfig, {"max_length": max_length, "supervise": supervise, "chat_template": chat_template},
                   where="tunesmith preview", flags=_flags("max_length", "supervise", "chat_template"))
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
    for line in block(f"not used: {rows_text(len(result.skipped))}", result.skipped, result.max_length,
                      result.context):
        typer.echo(line)
    if not result.checks.ok:
        sys.exit(EXIT_USER_ERROR)


@app.command()
def tokens(model: Annotated[str, typer.Option("--model")] = "default",
           add: Annotated[Optional[list[str]], typer.Option("--add", help="add a special token (repeatable)")] = None,
           out: Annotated[Optional[Path], typer.Option("--out", help="where --add saves the resized model")] = None,
           csv_path: Annotated[Optional[Path], typer.Option("--csv", help="write the special tokens as CSV")] = None,
           overwrite: Annotated[bool, typer.Option("--overwrite", help="let --add write into a non-empty --out "
                                                   "folder (files of the same names are replaced)")] = False,
           ) -> None:
    """Special tokens with ids, the chat template, vocabulary size, tokens per character (EN/KO).

    \b
    Examples:
      tunesmith tokens --model default
      tunesmith tokens --model default --csv tokens.csv
    """
    from tunesmith import preview as pv
    from tunesmith.compare import csv_target

    csv_path = csv_target(csv_path, "tokens.csv") if csv_path else None
    if add:
        if out is None:
            raise TunesmithError("--add needs --out DIR for the resized model", fix="add --out models/with-tokens")
        path = pv.add_tokens(model, add, out, overwrite=overwrite)
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


Target = Annotated[str, typer.Argument(metavar="RUN|MODEL", help="a run folder (its tuned model), an export "
                                       "folder, or a model spec: default, a folder, a .gguf file, a hub id")]
MaxNew = Annotated[Optional[int], typer.Option("--max-new-tokens", help="default: the run's eval setting (96)")]
Temperature = Annotated[Optional[float], typer.Option("--temperature", help="0 = greedy (the default)")]


@app.command()
def chat(target: Target,
         system: Annotated[Optional[str], typer.Option("--system", help="system prompt (default: the one every "
                                                       "training row of the run had, if any)")] = None,
         prompt: Annotated[Optional[str], typer.Option("--prompt", help="answer this once and exit")] = None,
         max_new_tokens: MaxNew = None, temperature: Temperature = None) -> None:
    """Chat with a tuned model (or any model) in the terminal, answers streamed; /reset, /system TEXT, /exit.

    \b
    Examples:
      tunesmith chat runs/demo
      tunesmith chat runs/demo --prompt "I cannot sleep before exams."
      tunesmith chat default --system "Answer in one word." --max-new-tokens 32
    """
    from tunesmith import chat as chatting
    from tunesmith.config import EvalConfig, section

    given = {"max_new_tokens": max_new_tokens, "temperature": temperature}
    options = {k: v for k, v in given.items() if v is not None}
    section(EvalConfig, options, where="tunesmith chat",  # the config's own checks, before the model loads
            flags=_flags("max_new_tokens", "temperature"))
    for flag, text in (("--prompt", prompt), ("--system", system)):
        if text is not None:
            chatting.checked_text(text, flag)  # bytes that are not UTF-8, before the model loads
    session = chatting.open_session(target, system=system, options=options, say=_say)

    def write(text: str) -> None:
        sys.stdout.write(text)
        sys.stdout.flush()

    if prompt is not None:
        reply = chatting.respond(session, prompt, write, note=_say)
        write("\n" if reply.stopped else " [cut at max_new_tokens]\n")
        return
    _say(f"chatting with {session.what}; {chatting.HELP}")
    tty = sys.stdin.isatty()
    if hasattr(sys.stdin, "reconfigure"):  # a line that is not UTF-8 is said and skipped, not a traceback
        sys.stdin.reconfigure(errors="surrogateescape")

    def read() -> str | None:
        try:
            return input("you> " if tty else "")
        except EOFError:
            return None

    chatting.repl(session, read, write)


@app.command()
def export(run: Run,
           out: Annotated[Path, typer.Option("--out", help="the folder to write")],
           format_: Annotated[str, typer.Option("--format", help="merged (safetensors folder) | gguf | ollama "
                                                "(GGUF + Modelfile)")] = "merged",
           quant: Annotated[str, typer.Option("--quant", help="GGUF: f32 f16 bf16 q8_0 q5_1 q5_0 q4_1 q4_0")] = "f16",
           overwrite: Annotated[bool, typer.Option("--overwrite", help="replace an earlier export in --out")] = False,
           push_to_hub: Annotated[Optional[str], typer.Option("--push-to-hub", help="then upload to this hub "
                                                              "repo (needs HF_TOKEN and network)")] = None) -> None:
    """Export the tuned model (merged weights, GGUF, Ollama), load it back and compare with the tuned model.

    \b
    Examples:
      tunesmith export runs/demo --out exports/demo
      tunesmith export runs/demo --out exports/demo-gguf --format gguf --quant q8_0
      tunesmith export runs/demo --out exports/demo-ollama --format ollama
    """
    from tunesmith import export as exporting

    if push_to_hub:
        exporting.check_hub(push_to_hub)  # before minutes of merging and checking
    result = exporting.export(run, out, fmt=format_, quant=quant, overwrite=overwrite, say=_say)
    typer.echo(f"exported {result.source} to {result.path} ({', '.join(result.files)})")
    typer.echo(f"reload check passed: {result.check.describe()}")
    if push_to_hub:
        typer.echo(f"uploaded: {exporting.push(out, push_to_hub)}")


@app.command()
def serve(targets: Annotated[Optional[list[str]], typer.Argument(
              metavar="[RUN|MODEL]...", help="what to serve: run folders, model specs, NAME=SPEC; base = the "
              "first run's base model")] = None,
          model: Annotated[Optional[list[str]], typer.Option("--model", help="another model to serve "
                                                             "(repeatable), as the arguments")] = None,
          host: Annotated[str, typer.Option("--host", help="127.0.0.1 = this machine only")] = "127.0.0.1",
          port: Annotated[int, typer.Option("--port")] = 8000,
          api_key: Annotated[Optional[str], typer.Option("--api-key", envvar="TUNESMITH_API_KEY", show_default=False,
                                                         help="require 'Authorization: Bearer KEY' (or set "
                                                              "TUNESMITH_API_KEY)")] = None,
          allow_remote: Annotated[bool, typer.Option("--allow-remote", help="serve another --host than loopback "
                                                     "without --api-key")] = False) -> None:
    """An OpenAI-compatible API (/v1/models, /v1/chat/completions, streaming) over tuned and base models.

    \b
    Examples:
      tunesmith serve runs/demo --model base
      tunesmith serve runs/demo --host 0.0.0.0 --api-key "$KEY"
    """
    from tunesmith import serve as serving

    every = [*(targets or []), *(model or [])]
    if not every:
        raise TunesmithError("nothing to serve", fix="name a run folder or model: tunesmith serve runs/demo "
                             "--model base")
    serving.serve(every, host=host, port=port, api_key=api_key, allow_remote=allow_remote, say=_say)


@app.command()
def synth(seeds: Annotated[Path, typer.Option("--seeds", help="seed words, one per line")],
          out: Annotated[Path, typer.Option("--out", help="JSONL to write (a re-run resumes it)")],
          docs: Annotated[Optional[Path], typer.Option("--docs", help="folder of .txt/.md/.jsonl passages to "
                                                      "ground answers in")] = None,
          generator: Annotated[str, typer.Option("--generator", help="model spec, run folder, or an "
                                                 "OpenAI-compatible url (…/v1)")] = "default",
          api_model: Annotated[Optional[str], typer.Option("--api-model", help="model name at the url")] = None,
          per_seed: Annotated[int, typer.Option("--per-seed", help="questions per seed word")] = 5,
          lang: Annotated[Optional[str], typer.Option("--lang", help="ko or en: prompts, and rows in other "
                                                      "languages removed")] = None,
          fmt: Annotated[str, typer.Option("--format", help="messages or alpaca")] = "messages",
          top_k: Annotated[int, typer.Option("--top-k", help="passages per question")] = 3,
          retriever: Annotated[str, typer.Option("--retriever", help="e5, bm25, hybrid, or a "
                                                 "sentence-transformers folder")] = "e5",
          prompts_file: Annotated[Optional[Path], typer.Option("--prompts", help="JSON overriding the shipped "
                                                               "prompt templates")] = None,
          limit_seeds: Annotated[Optional[int], typer.Option("--limit-seeds", help="the first N seed words")] = None,
          set_: Sets = None,
          dry_run: Annotated[bool, typer.Option("--dry-run", help="print the first seed word's prompts and "
                                                "stop")] = False) -> None:
    """Build a training file from seed words: questions, retrieved passages, grounded answers, filters.

    \b
    Examples:
      tunesmith synth --seeds seed_words.txt --docs my_docs/ --out synth.jsonl --per-seed 5 --lang ko
      tunesmith synth --seeds seed_words.txt --docs my_docs/ --out synth.jsonl --dry-run
      tunesmith synth --seeds words.txt --out synth.jsonl --generator http://127.0.0.1:8000/v1 --api-model m
    """
    from tunesmith import synth as synthesis
    from tunesmith.config import SynthConfig, section, set_override

    given = {"seeds": seeds, "out": out, "docs": docs, "generator": generator, "api_model": api_model,
             "per_seed": per_seed, "lang": lang, "format": fmt, "top_k": top_k, "retriever": retriever,
             "prompts": prompts_file, "limit_seeds": limit_seeds}
    flags = _flags(*(k for k in given if k not in ("prompts", "format")), prompts="prompts_file", format="fmt")
    for assignment in set_ or []:  # the options without a flag of their own: --set min_support=0.2
        set_override(given, assignment)
    cfg = section(SynthConfig, {k: v for k, v in given.items() if v is not None}, where="tunesmith synth",
                  flags=flags)
    if dry_run:
        synthesis.dry_run(cfg, say=typer.echo)  # the prompts are this command's output: stdout
        return
    summary = synthesis.synthesize(cfg, say=_say)
    for line in summary.lines():
        typer.echo(line)
    typer.echo(f"wrote {summary.out} (check it: tunesmith inspect {summary.out})")


@app.command()
def ui(host: Annotated[str, typer.Option("--host", help="127.0.0.1 (this machine only) unless you mean it")]
       = "127.0.0.1",
       port: Annotated[int, typer.Option("--port")] = 7860,
       runs: Annotated[Path, typer.Option("--runs", help="the folder of run folders and uploads")] = Path("runs"),
       allow_remote: Annotated[bool, typer.Option("--allow-remote", help="let --host be other than loopback "
                                                  "(an access token is then required)")] = False,
       max_upload_mb: Annotated[int, typer.Option("--max-upload-mb", min=1, help="the largest file the upload box "
                                                  "takes")] = 100) -> None:
    """A local web app: data, runs and reports in the browser (English / 한국어).

    \b
    Examples:
      tunesmith ui
      tunesmith ui --runs my-runs --port 7861
    """
    from tunesmith.ui import serve as ui_serve

    ui_serve.run(runs, host=host, port=port, allow_remote=allow_remote, max_upload_mb=max_upload_mb, say=_say)


def main() -> None:
    import warnings

    # TRL 1.16 and PEFT 0.21 still use transformers' renamed gradient-checkpointing names; not the user's to fix.
    warnings.filterwarnings("ignore", message=r".*gradient_checkpointing.*deprecated", category=FutureWarning)
    # Standalone mode lets typer turn usage errors (bad flag values) into exit code 2 itself.
    try:
        app()
    except TunesmithError as err:
        if _state["debug"]:
            raise
        typer.echo(f"error: {err.render()}", err=True)
        sys.exit(EXIT_USER_ERROR)
    except SystemExit as done:
        # typer turns Ctrl-C (KeyboardInterrupt) into a silent exit 130 (typer/core.py `_main`); no verb exits
        # 130 itself, so this is the place to say what an interrupted run leaves behind.
        if done.code == 130:
            typer.echo("\ninterrupted" + ("; re-run the same command to resume from the last complete checkpoint"
                                          if _state["training"] else ""), err=True)
        raise
