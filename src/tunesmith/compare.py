"""`tunesmith compare`: the same prompts through several models, side by side (the seeds' base-vs-instruct lesson).

Each model renders through its own chat template, or tunesmith's plain fallback when it has none (a base model);
a run trained on plain text or segments rows continues the prompt's text as typed, as its eval did. All generate
with the same settings; the result is a table and a CSV with one column per model.
"""

from __future__ import annotations

import csv
import gc
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from tunesmith import generation, models, rundir, template
from tunesmith.config import EvalConfig, TemplateConfig
from tunesmith.data import calls, formats, readers
from tunesmith.format_names import KNOWN_ROLES
from tunesmith.errors import TunesmithError
from tunesmith.records import Conversation, Message, Skip

PROMPT_KEYS = ("prompt", "instruction", "question", "input", "text", "query")


@dataclass(frozen=True)
class Comparison:
    models: tuple[str, ...]
    templates: tuple[str, ...]  # per model: "own chat template" or the fallback used
    prompts: tuple[Conversation, ...]
    outputs: tuple[tuple[str, ...], ...]  # per prompt, one generation per model
    stopped: tuple[tuple[bool, ...], ...]
    skipped: tuple[Skip, ...] = ()


def _prompt(fields: object, location: str) -> Conversation | None:
    """A record's prompt, ending on the empty assistant turn where generation starts: a plain string, a prompt-like
    field (+ Alpaca input), or chat messages (read as the data stage reads them: a tool's calls, outputs and the
    row's tools included). A conversation that the data stage would skip raises formats.BadRow."""
    if isinstance(fields, str):
        return _asking([Message("user", fields.strip())], location) if fields.strip() else None
    if not isinstance(fields, dict):
        return None
    if isinstance(fields.get("messages"), list):
        return _chat_prompt(fields, location)
    key = next((k for k in PROMPT_KEYS if isinstance(fields.get(k), str) and fields[k].strip()), None)
    if key is None:
        return None
    text = fields[key].strip()
    if key == "instruction" and isinstance(fields.get("input"), str) and fields["input"].strip():
        text += "\n\n" + fields["input"].strip()
    return _asking([Message("user", text)], location)


def _asking(msgs: list[Message], location: str, tools: str | None = None) -> Conversation:
    return Conversation((*msgs, Message("assistant", "")), location, tools=tools)


def _chat_prompt(fields: dict, location: str) -> Conversation | None:
    """Chat messages up to the answer (the file's answer, if it has one, is not part of the prompt)."""
    turns = [t for t in fields["messages"] if isinstance(t, dict)]
    while turns and KNOWN_ROLES.get(str(turns[-1].get("role", "")).strip().lower()) == "assistant":
        turns.pop()
    if not turns:
        return None
    row = {**fields, "messages": [*turns, {"role": "assistant", "content": "(answer)"}]}
    try:
        read = formats.FORMATS["messages"][1](row)
    except (KeyError, TypeError, AttributeError) as err:
        raise formats.BadRow("malformed", f"malformed messages ({type(err).__name__}: {err})") from None
    mapped = [(KNOWN_ROLES.get(str(role).strip().lower(), role), content, *rest) for role, content, *rest in read]
    conv = formats.validate(mapped, location, None, calls.tools_field(fields))
    return _asking(list(conv.messages[:-1]), location, conv.tools)


def read_prompts(path: Path) -> tuple[list[Conversation], list[Skip]]:
    """Prompts from a .txt (one per line), .json/.jsonl/.csv (a prompt-like field or `messages`)."""
    records, skipped, _ = readers.read(path)
    convs, skipped = [], list(skipped)
    for rec in records:
        try:
            conv = _prompt(rec.fields, rec.location)
        except formats.BadRow as err:
            skipped.append(Skip(rec.location, str(err), err.kind))
            continue
        if conv is None:
            skipped.append(Skip(rec.location, f"no prompt: expected a string, one of {', '.join(PROMPT_KEYS)}, "
                                              "or messages", "no_prompt"))
            continue
        convs.append(conv)  # its empty assistant turn marks where generation starts (prompt_text renders the rest)
    if not convs:
        raise TunesmithError(f"no prompts found in {path}", where=str(path),
                             problems=[f"{s.location}: {s.reason}" for s in skipped[:5]],
                             fix="one prompt per line in a .txt, or JSONL rows with a 'prompt' field")
    return convs, skipped


def compare(specs: list[str], prompts: list[Conversation], cfg: EvalConfig, *, skipped: Sequence[Skip] = (),
            say: Callable[[str], None] = print) -> Comparison:
    """Generate for every prompt with every model, one model in memory at a time; `skipped` are the rows
    `read_prompts` could not use, carried into the result so that its counts add up."""
    outputs, stopped, templates = [], [], []
    for spec in specs:
        model, tok, _ = models.load_target(spec)  # a run folder: its tuned weights (`--models default,runs/demo`)
        models.for_inference(model, cfg.precision)  # as eval generates: every model in the same dtype
        own = bool(getattr(tok, "chat_template", None))
        raw = _trained_raw(spec)
        templates.append("text as typed (trained without a chat template)" if raw else "own chat template" if own
                         else "plain fallback (no chat template)")
        convs = [template.as_raw_prompt(c) for c in prompts] if raw else \
            template.render_dataset(tok, prompts, TemplateConfig()).convs
        say(f"generating with {spec} ({templates[-1]}) for {len(convs)} prompts ...")
        gens = generation.generate(model, tok, convs, cfg.model_copy(update={"max_rows": len(convs)}))
        outputs.append([g.generation for g in gens])
        stopped.append([g.stopped for g in gens])
        del model
        gc.collect()
    return Comparison(tuple(specs), tuple(templates), tuple(prompts), tuple(zip(*outputs)), tuple(zip(*stopped)),
                      tuple(skipped))


def _trained_raw(spec: str) -> bool:
    """A run folder whose rows were plain text or segments: its model continues text as typed, as in its eval."""
    run = rundir.RunDir(Path(spec))
    return run.config.is_file() and template.trained_raw(run.read_conversations("train"))


def csv_target(path: Path, default_name: str = "compare.csv") -> Path:
    """Where a CSV will be written, checked before the slow part so that no generations are lost to a bad path.

    A folder means `folder/compare.csv`; missing parent folders are created.

    >>> csv_target(Path("out/"))  # doctest: +SKIP
    PosixPath('out/compare.csv')
    """
    if path.is_dir():
        path = path / default_name
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise TunesmithError(f"cannot create the folder for the CSV: {err.strerror}", where=f"--csv {path}",
                             fix="pass a --csv path in a folder you can write to") from None
    if path.is_dir() or not os.access(path.parent, os.W_OK) or (path.exists() and not os.access(path, os.W_OK)):
        raise TunesmithError("cannot write the CSV there", where=f"--csv {path}",
                             fix="pass a --csv path in a folder you can write to")
    return path


def write_csv(result: Comparison, path: Path) -> None:
    """One row per prompt: the prompt, then each model's output and whether it stopped by itself."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", encoding="utf-8-sig", newline="") as f:  # with BOM: Excel opens Korean correctly
        w = csv.writer(f)
        w.writerow(["source", "prompt", *(h for m in result.models for h in (m, f"{m} stopped"))])
        for conv, outs, stops in zip(result.prompts, result.outputs, result.stopped):
            prompt = "\n".join(m.content for m in conv.messages if m.role == "user")
            w.writerow([conv.source, prompt, *(x for pair in zip(outs, stops) for x in pair)])
