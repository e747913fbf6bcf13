"""The verbs of a run: train, plan, init, demo, eval, report."""

from __future__ import annotations

import os
from importlib import resources
from pathlib import Path
from typing import Annotated, Optional

import typer

from tunesmith.cli.shell import (BatchSize, Config, ContinueFrom, DataOpt, Epochs, EvalData, Load4, Load8, LoraR,
                                 Lr, Model, Name, OutputDir, Overwrite, Run, Sets, Strict, _config, _flags,
                                 _model_list, _print_eval, _print_summary, _say, _training, app)
from tunesmith.errors import TunesmithError

@app.command()
def train(config_path: Config = None, overwrite: Overwrite = False, set_: Sets = None, name: Name = None,
          model: Model = None, data: DataOpt = None, eval_data: EvalData = None, output_dir: OutputDir = None,
          epochs: Epochs = None, batch_size: BatchSize = None, lr: Lr = None, lora_r: LoraR = None,
          load_8bit: Load8 = False, load_4bit: Load4 = False, continue_from: ContinueFrom = None,
          strict: Strict = False,
          trust_code: Annotated[bool, typer.Option("--trust-code", help="run your own Python that the config names "
                                                   "(grpo.rewards FILE.py:FUNCTION); never set by the board")] = False,
          ) -> None:
    """Run end to end: data, plan, training, base vs tuned eval, report. Re-run an unfinished run to resume it.

    \b
    Examples:
      tunesmith train --data my.jsonl
      tunesmith train my.yaml --epochs 5 --lr 1e-4 --lora-r 8
      tunesmith train my.yaml --set lora.dora=true --name dora-run
      tunesmith train my.yaml    # again: resumes
      tunesmith train my.yaml --set train.objective=grpo --set 'grpo.rewards=[answer, my_rewards.py:fmt]' --trust-code
    """
    _training()
    from tunesmith import pipeline

    cfg = _config(config_path, set_, data, name=name, model=model, eval_data=eval_data, output_dir=output_dir,
                  epochs=epochs, batch_size=batch_size, lr=lr, lora_r=lora_r, load_8bit=load_8bit,
                  load_4bit=load_4bit, continue_from=continue_from, strict=strict)
    summary = pipeline.run(cfg, overwrite=overwrite, say=_say, trust_code=trust_code)
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
         overwrite: Annotated[bool, typer.Option("--overwrite", help="replace the config file at --out")] = False,
         from_: Annotated[Optional[Path], typer.Option("--from", help="a LLaMA-Factory or Axolotl training "
                                                       "config: write the same run as tunesmith's")] = None
         ) -> None:
    """Write a commented config with every key at its default, or the tunesmith config of another tool's run.

    \b
    Examples:
      tunesmith init --data my.jsonl --out my.yaml
      tunesmith init --from llama3_lora_sft.yaml --out my.yaml
      tunesmith init --from axolotl.yml --out my.yaml
    """
    from tunesmith import config_docs

    if out.is_dir():
        raise TunesmithError("--out is a folder; it names the config file to write", where=f"--out {out}",
                             fix=f"pass a file name, e.g. --out {out / 'tunesmith.yaml'}")
    if out.exists() and not overwrite:
        raise TunesmithError(f"{out} already exists", fix="pass --overwrite, or --out another.yaml")
    created = not out.parent.exists()
    rel = [os.path.relpath(Path(p).resolve(), out.resolve().parent) for p in data or []]
    text = config_docs.translated_yaml(from_, out, data or []) if from_ else config_docs.commented_yaml(rel, model)
    try:
        out.parent.mkdir(parents=True, exist_ok=True)  # `--out configs/new/run.yaml` in a fresh checkout
        out.write_text(text, encoding="utf-8")
    except OSError as err:
        raise TunesmithError(f"cannot write the config: {err.strerror}", where=f"--out {out}",
                             fix="pass --out in a folder you can write to") from None
    typer.echo(f"wrote {out}{f' (created the folder {out.parent})' if created else ''}; "
               f"check it with: tunesmith plan {out}")



@app.command()
def demo(overwrite: Overwrite = False, set_: Sets = None, name: Name = None, model: Model = None,
         output_dir: OutputDir = None,
         prefs: Annotated[bool, typer.Option("--prefs", help="continue the demo's run with DPO on the bundled "
                                             "preference pairs (trains the demo first when it is missing)")]
         = False) -> None:
    """The shipped demo: LoRA-tune the embedded SmolLM2 on the bundled counselling data.

    \b
    Examples:
      tunesmith demo
      tunesmith demo --overwrite --set train.epochs=1
      tunesmith demo --output-dir my-runs
      tunesmith demo --prefs
    """
    _training()
    from tunesmith import pipeline, rundir

    with resources.as_file(resources.files("tunesmith") / "configs" / "demo.yaml") as path:
        cfg = _config(path, None if prefs else set_, None, name=None if prefs else name, model=model,
                      output_dir=output_dir)
        sft = rundir.RunDir(cfg.output_dir / cfg.name)
        summary = None
        if not prefs or not sft.finished:
            if prefs:
                _say(f"the preference demo continues {sft.root}; training it first ...")
            summary = pipeline.run(cfg, overwrite=overwrite and not prefs, say=_say)
    if prefs:
        with resources.as_file(resources.files("tunesmith") / "configs" / "demo_prefs.yaml") as path:
            from tunesmith.config import override

            cfg = _config(path, [*(set_ or []), override("continue_from", str(sft.root.resolve()))], None,
                          name=name, model=model, output_dir=output_dir)
            summary = pipeline.run(cfg, overwrite=overwrite, say=_say)
    if summary is not None:
        _print_summary(summary)


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
