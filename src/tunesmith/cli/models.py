"""The verbs that use a tuned model: chat, export, serve, and the board (ui)."""

from __future__ import annotations

import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any, Optional

import typer

from tunesmith.cli.shell import MaxNew, Run, Target, Temperature, _flags, _say, app
from tunesmith.errors import TunesmithError

@app.command()
def chat(target: Target,
         system: Annotated[Optional[str], typer.Option("--system", help="system prompt (default: the one every "
                                                       "training row of the run had, if any)")] = None,
         prompt: Annotated[Optional[str], typer.Option("--prompt", help="answer this once and exit")] = None,
         max_new_tokens: MaxNew = None, temperature: Temperature = None,
         collect: Annotated[Optional[Path], typer.Option("--collect", metavar="FILE.jsonl", help="show two answers "
                                                         "per prompt and write your choices as preference pairs "
                                                         "(TRL format; ratings to FILE.kto.jsonl)")] = None,
         versus: Annotated[Optional[str], typer.Option("--versus", metavar="base", help="with --collect: the "
                                                       "second answer from the run's base model, not a second "
                                                       "sample")] = None) -> None:
    """Chat with a tuned model (or any model) in the terminal, streamed; /reset, /system TEXT, /tool TEXT, /exit.

    \b
    Examples:
      tunesmith chat runs/demo
      tunesmith chat runs/demo --prompt "I cannot sleep before exams."
      tunesmith chat default --system "Answer in one word." --max-new-tokens 32
      tunesmith chat runs/demo --collect prefs.jsonl --versus base
    """
    from tunesmith import chat as chatting

    options = _chat_options(max_new_tokens, temperature, prompt, system, versus, collect)
    collector = None
    if collect is not None:
        from tunesmith.collect import Collector

        collector = Collector.open(collect)  # a bad file name, before the model loads
    session = chatting.open_session(target, system=system, options=options, say=_say)
    if sys.stdout.isatty() and not os.environ.get("NO_COLOR"):
        session.shade = ("\x1b[2m", "\x1b[0m")  # an answer's thinking dim, its answer as usual

    def write(text: str) -> None:
        sys.stdout.write(text)
        sys.stdout.flush()

    if prompt is not None:
        reply = chatting.respond(session, prompt, write, note=_say)
        write("\n" if reply.stopped else " [cut at max_new_tokens]\n")
        return
    _say(f"chatting with {session.what}; {chatting.HELP}")
    read = _line_reader()
    if collector is not None:
        from tunesmith.collect import collect as collecting

        other = chatting.open_session(target, system=system, options=options, say=_say, base=True) \
            if versus else None
        collecting(session, other, collector, read, write)
        return
    chatting.repl(session, read, write)


def _chat_options(max_new_tokens: int | None, temperature: float | None, prompt: str | None, system: str | None,
                  versus: str | None, collect: Path | None) -> dict[str, Any]:
    """chat's flags checked before the model loads (the config's own checks, UTF-8, --versus); the generation
    options given."""
    from tunesmith import chat as chatting
    from tunesmith.config import EvalConfig, section

    given = {"max_new_tokens": max_new_tokens, "temperature": temperature}
    options = {k: v for k, v in given.items() if v is not None}
    section(EvalConfig, options, where="tunesmith chat", flags=_flags("max_new_tokens", "temperature"))
    for flag, text in (("--prompt", prompt), ("--system", system)):
        if text is not None:
            chatting.checked_text(text, flag)  # bytes that are not UTF-8
    if versus is not None and (versus != "base" or collect is None):
        raise TunesmithError(f"--versus {versus}: only --versus base, and only with --collect",
                             fix="tunesmith chat RUN --collect prefs.jsonl --versus base")
    return options


def _line_reader() -> Callable[[], str | None]:
    """A reader of the user's lines ("you> " on a terminal; None at the end of input); a line that is not UTF-8 is
    said and skipped by the chat, not a traceback."""
    tty = sys.stdin.isatty()
    if hasattr(sys.stdin, "reconfigure"):
        sys.stdin.reconfigure(errors="surrogateescape")

    def read() -> str | None:
        try:
            return input("you> " if tty else "")
        except EOFError:
            return None

    return read



@app.command()
def export(run: Run,
           out: Annotated[Path, typer.Option("--out", help="the folder to write")],
           format_: Annotated[str, typer.Option("--format", help="merged (safetensors folder) | gguf | ollama "
                                                "(GGUF + Modelfile)")] = "merged",
           quant: Annotated[str, typer.Option("--quant", help="GGUF: f32 f16 bf16 q8_0 q5_1 q5_0 q4_1 q4_0; "
                                              "with `make llama-cpp` also q6_k q5_k_m q5_k_s q4_k_m q4_k_s q3_k_m "
                                              "q2_k")] = "f16",
           overwrite: Annotated[bool, typer.Option("--overwrite", help="replace an earlier export in --out")] = False,
           push_to_hub: Annotated[Optional[str], typer.Option("--push-to-hub", help="then upload to this hub "
                                                              "repo (needs HF_TOKEN and network)")] = None) -> None:
    """Export the tuned model (merged weights, GGUF, Ollama), load it back and compare with the tuned model.

    \b
    Examples:
      tunesmith export runs/demo --out exports/demo
      tunesmith export runs/demo --out exports/demo-gguf --format gguf --quant q8_0
      tunesmith export runs/demo --out exports/demo-ollama --format ollama
      tunesmith export runs/demo --out exports/demo-q4km --format ollama --quant q4_k_m
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
                                                     "without --api-key")] = False,
          precision: Annotated[str, typer.Option("--precision", help="fp32: greedy requests batched together answer "
                                                 "exactly as alone; auto/bf16: faster alone, a batched answer can "
                                                 "differ after some tokens")] = "fp32") -> None:
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
    from tunesmith.config import EvalConfig, section

    section(EvalConfig, {"precision": precision}, where="tunesmith serve", flags=_flags("precision"))
    serving.serve(every, host=host, port=port, api_key=api_key, allow_remote=allow_remote, precision=precision,
                  say=_say)



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


@app.command("models")
def models_(path: Annotated[Optional[list[Path]], typer.Option("--path", help="also a model folder, a .gguf, or a "
                                                              "folder of them (repeatable)")] = None,
            data: Annotated[Optional[list[Path]], typer.Option("--data", help="estimate memory and time of "
                                                               "training on this file with each model")] = None,
            as_json: Annotated[bool, typer.Option("--json", help="print one JSON object")] = False) -> None:
    """The models on this machine tunesmith can train: Hugging Face cache, Ollama, LM Studio, your folders.

    \b
    Examples:
      tunesmith models
      tunesmith models --data my.jsonl
      tunesmith models --path ~/models --json
    """
    import json

    from tunesmith import catalog

    found = catalog.everything(list(path or []))
    infos = []
    for i, model in enumerate(found, 1):
        _say(f"reading {model.name} ({i} of {len(found)}) ...")
        info = catalog.describe(model)
        infos.append(catalog.with_fit(info, list(data)) if data else info)
    if as_json:
        typer.echo(json.dumps({"models": [i.to_json() for i in infos]}, ensure_ascii=False, indent=2))
        return
    where = ("looked in: the Hugging Face cache, Ollama's store ($OLLAMA_MODELS or ~/.ollama/models), "
             "LM Studio (~/.lmstudio/models)" + "".join(f", {p}" for p in path or []))
    typer.echo("\n".join(catalog.lines(infos)))
    typer.echo(f"\n{where}. Korean needs a model that speaks it (README: the Korean path)")
