"""The base model's evaluation, kept across runs: the same model, rows and settings give the same generations,
reference NLLs and retention numbers, so a second run on them (`make demo` again, a new run on the same data and
base model) reuses them instead of loading the base model and generating again (the demo's base half: ~40 s of
its ~80 s evaluation here).

The key is a sha256 over exactly what decides those numbers: the model's files (name, size and mtime of every file
of its folder: a re-converted or re-downloaded model is a new key), how it was loaded (load_in, precision), the
eval settings (EvalSettings, batch_size, retention), the versions of torch and transformers, the device, and
every row's rendered prompt and token ids in order. Anything else that differs is a miss, never a near match.
Entries live in $TUNESMITH_HOME/cache/eval/<key>.json; `eval.cache: false` or `--fresh` does not read them.
"""

from __future__ import annotations

import hashlib
import json
import platform
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from tunesmith import diskio, models
from tunesmith.records import Example, Generation, RetentionModel


# What an entry's generations were made with; a change that makes earlier entries wrong bumps it. 2: the base model
# is prompted with a configured chat template (entries before were generated with its own template where
# template.chat_template was set, under a key made of the configured template's prompts).
ENTRIES = 2


@dataclass(frozen=True)
class CachedEval:
    """One model's evaluation on one set of rows: per row (text, stopped) and (sum of nll, tokens)."""

    spec: str
    answers: tuple[tuple[str, bool], ...]
    nll: tuple[tuple[float, int], ...]
    retention: RetentionModel | None

    def generations(self, rows: Sequence[tuple[str, str, str]]) -> list[Generation]:
        """Generation records for `rows` (source, prompt, reference), the ones this entry was made for."""
        return [Generation(src, prompt, ref, text, stopped) for (src, prompt, ref), (text, stopped)
                in zip(rows, self.answers, strict=True)]


def folder() -> Path:
    return models.home() / "cache" / "eval"


def fingerprint(spec: str) -> list[tuple[str, int, int]] | None:
    """(name, size, mtime_ns) of every file of the model folder `spec` resolves to; None when it is not a folder
    on this machine (nothing to key on: not cached)."""
    try:
        path = Path(models.resolve(spec))
    except Exception:  # noqa: BLE001 - an unresolvable spec is simply not cached; loading it reports the error
        return None
    if not path.is_dir():
        return None
    return sorted((p.name, p.stat().st_size, p.stat().st_mtime_ns) for p in path.iterdir() if p.is_file())


def key(model_files: list[tuple[str, int, int]], load: dict[str, Any], settings: dict[str, Any],
        prompts: Sequence[str], examples: Sequence[Example]) -> str:
    """The sha256 naming an entry (see the module docstring for what goes in)."""
    import torch
    import transformers

    device = torch.cuda.get_device_name() if torch.cuda.is_available() else platform.processor() or "cpu"
    head = {"model": model_files, "load": load, "settings": settings, "torch": torch.__version__,
            "transformers": transformers.__version__, "device": device, "entries": ENTRIES}
    digest = hashlib.sha256(json.dumps(head, sort_keys=True).encode())
    for prompt in prompts:
        digest.update(b"\x00prompt\x00" + prompt.encode("utf-8"))
    for ex in examples:
        digest.update(b"\x00ids\x00" + json.dumps([ex.input_ids, ex.labels]).encode())
    return digest.hexdigest()


def read(name: str) -> CachedEval | None:
    path = folder() / f"{name}.json"
    if not path.is_file():
        return None
    try:
        obj = diskio.read_json(path)
        kept = obj["retention"]
        return CachedEval(obj["spec"], tuple((t, bool(s)) for t, s in obj["answers"]),
                          tuple((float(a), int(b)) for a, b in obj["nll"]),
                          None if kept is None else RetentionModel(
                              kept["label"], tuple(map(tuple, kept["text_nll"])),
                              tuple(map(tuple, kept["answer_nll"])), tuple(kept["answers"])))
    except Exception:  # noqa: BLE001 - a torn or foreign entry is a miss, and is rewritten after the eval
        return None


def write(name: str, entry: CachedEval) -> Path:
    path = folder() / f"{name}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    diskio.write_json(path, asdict(entry))
    return path
