"""The verbs about data, before a run and beside it: inspect, preview, tokens, compare, synth."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated, Optional

import typer

from tunesmith.cli.shell import _flags, _model_list, _pairs, _say, app
from tunesmith.errors import EXIT_USER_ERROR, TunesmithError

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
    if format == "auto" and _preference_files(list(paths), cfg.encoding, as_json):
        return
    summary = summarize(list(paths), cfg, model=model, max_length=tcfg.max_length)
    typer.echo(json.dumps(to_json(summary), ensure_ascii=False, indent=2) if as_json else render(summary))
    if not summary.usable:
        sys.exit(EXIT_USER_ERROR)



def _preference_files(paths: list[Path], encoding: str, as_json: bool) -> bool:
    """inspect on preference data (pairs or KTO rows): their own report; False when the files are not that."""
    import json

    from tunesmith.data import preference
    from tunesmith.data.summary import preference_json, render_preferences

    files = preference.preference_files(paths, encoding)
    if files is None:
        return False
    reads = [preference.load(f, encoding=encoding) for f in files]
    typer.echo(json.dumps(preference_json(reads), ensure_ascii=False, indent=2) if as_json
               else render_preferences(reads))
    if not any(r.pairs or r.rated for r in reads):
        sys.exit(EXIT_USER_ERROR)
    return True


@app.command()
def preview(paths: Annotated[list[Path], typer.Argument(metavar="DATA...", help="files, folders or globs")],
            model: Annotated[str, typer.Option("--model", help="whose chat template to render with")] = "default",
            n: Annotated[int, typer.Option("-n", help="rows to show")] = 3,
            max_length: Annotated[str, typer.Option("--max-length", help="tokens, or auto")] = "auto",
            supervise: Annotated[str, typer.Option("--supervise", help="assistant | last | all")] = "assistant",
            chat_template: Annotated[str, typer.Option("--chat-template", help="auto | plain | chatml")] = "auto",
            role: Annotated[Optional[list[str]], typer.Option("--role", help="NAME=ROLE")] = None,
            column: Annotated[Optional[list[str]], typer.Option("--column", help="FIELD=YOURS")] = None,
            format: Annotated[str, typer.Option("--format", help="auto, or force a format")] = "auto",
            system: Annotated[Optional[str], typer.Option("--system", help="add or replace the system turn")] = None,
            encoding: Annotated[str, typer.Option("--encoding", help="auto, or a codec name")] = "auto",
            ) -> None:
    """Show rows exactly as training sees them: supervised tokens highlighted, token counts, template checks.

    \b
    Examples:
      tunesmith preview my.json -n 3
      tunesmith preview qa.csv --column prompt=Q --column completion=A --system "Answer kindly."
    """
    from rich.console import Console
    from rich.text import Text

    from tunesmith import preview as pv
    from tunesmith.config import DataConfig, TemplateConfig, section
    from tunesmith.skips import block, rows_text
    from tunesmith.template import describe

    if n < 0:
        raise TunesmithError(f"-n must be 0 or more (got {n})", where="tunesmith preview", fix="e.g. -n 3")
    data_cfg = section(DataConfig, {"train": list(paths), "roles": _pairs(role, "--role"), "format": format,
                                    "columns": _pairs(column, "--column"), "system": system, "encoding": encoding},
                       where="tunesmith preview", flags=_flags("format", "encoding", "system"))
    tcfg = section(TemplateConfig, {"max_length": max_length, "supervise": supervise, "chat_template": chat_template},
                   where="tunesmith preview", flags=_flags("max_length", "supervise", "chat_template"))
    from tunesmith.data import preference

    files = preference.preference_files(list(paths), encoding) if format == "auto" else None
    if files is not None:
        result = pv.preview_pairs(files, tcfg, model, n, encoding)  # each pair: chosen, then rejected
    else:
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
          set_: Annotated[Optional[list[str]], typer.Option("--set", help="a synth option without a flag of its "
                                                            "own: --set min_support=0.2")] = None,
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
    if not summary.written:  # never "wrote" for a file that holds nothing
        raise TunesmithError("no row passed the filters, so nothing was written", where=f"--out {summary.out}",
                             fix="see the removal counts above; give a bigger --generator (`tunesmith models` "
                                 "lists the models on this machine), or loosen a filter with --set")
    typer.echo(f"wrote {summary.out} (check it: tunesmith inspect {summary.out})")
