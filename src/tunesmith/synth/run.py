"""The synth pipeline, seed by seed: questions -> filter -> retrieve -> answer -> filter -> append a row.

Resumable: every row is appended to --out as it is made, and every decision (the questions a seed got, each
removal with its reason) to a progress file beside it (`OUT.progress.jsonl`). A re-run with the same settings
skips what is done: no question is generated twice, no row written twice, and the counts add up over both runs.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tunesmith import progress
from tunesmith.diskio import append_jsonl, cut_torn_tail, read_jsonl
from tunesmith.config import SynthConfig
from tunesmith.errors import TunesmithError
from tunesmith.metrics import language_of
from tunesmith.synth import filters, prompts
from tunesmith.synth.generator import open_generator
from tunesmith.synth.retrieve import Passage, Retriever, chunk_documents
from tunesmith.synth.seeds import Seeds, read_seeds


@dataclass(frozen=True)
class SynthRow:
    """One synthesized training row with its provenance (tunesmith synth)."""

    seed: str
    index: int  # which of the seed word's questions
    question: str
    answer: str
    passages: tuple[Passage, ...]
    generator: str

    def to_json(self, fmt: str, settings: dict[str, Any]) -> dict[str, Any]:
        provenance = {"seed": self.seed, "question_index": self.index, "generator": self.generator,
                      "passages": [p.to_json() for p in self.passages], "settings": settings}
        if fmt == "alpaca":
            return {"instruction": self.question, "input": "", "output": self.answer, "provenance": provenance}
        return {"messages": [{"role": "user", "content": self.question},
                             {"role": "assistant", "content": self.answer}], "provenance": provenance}


@dataclass(frozen=True)
class SynthSummary:
    """What `tunesmith synth` did, counted so the numbers add up: asked = written + removed by reason."""

    out: Path
    seeds_read: int
    seeds_removed: dict[str, int]  # reason -> seed lines removed (empty, duplicate)
    seeds_used: int
    questions: int  # questions generated (parsed from the generator's replies)
    removed: dict[str, int]  # reason -> questions or answers removed
    written: int  # rows in the output file
    resumed: int  # of those, rows already there when this run started

    def lines(self) -> list[str]:
        gone = sum(self.removed.values())
        out = [f"seed words: {self.seeds_read} read, {self.seeds_used} used"
               + "".join(f", {n} {why}" for why, n in self.seeds_removed.items() if n),
               f"questions: {self.questions} generated -> {self.written} rows written ({self.resumed} from an "
               f"earlier run), {gone} removed"]
        out += [f"  removed, {why}: {n}" for why, n in sorted(self.removed.items(), key=lambda kv: -kv[1])]
        return out


def progress_file(out: Path) -> Path:
    return out.with_name(out.name + ".progress.jsonl")


def settings_of(cfg: SynthConfig, lang: str, model: str) -> dict[str, Any]:
    """What the rows depend on: a resumed run must use the same (recorded in the progress file and each row).
    `model` is the generator's model, not its url: a server restarted on another port serves the same rows."""
    keep = ("per_seed", "format", "top_k", "retriever", "chunk_chars", "temperature", "max_new_tokens",
            "min_chars", "duplicate_similarity", "min_support", "seed")
    out = {k: getattr(cfg, k) for k in keep}
    return {"generator": model, **out, "lang": lang, "docs": str(cfg.docs) if cfg.docs else None,
            "prompts": str(cfg.prompts) if cfg.prompts else f"shipped ({lang})"}


class Journal:
    """The progress file and the output file as they stand; appends to both."""

    def __init__(self, cfg: SynthConfig, settings: dict[str, Any]) -> None:
        self.out, self.path, self.fmt, self.settings = cfg.out, progress_file(cfg.out), cfg.format, settings
        events = _read_jsonl(self.path)
        if events and events[0].get("settings") != settings:
            changed = [k for k in settings if events[0].get("settings", {}).get(k) != settings[k]]
            raise TunesmithError(f"{cfg.out} was started with other settings ({', '.join(changed)})",
                                 where="synth", fix=f"use the same options to resume it, or a new --out (or delete "
                                 f"{cfg.out} and {self.path} to start over)")
        if not events:
            if cfg.out.exists() and cfg.out.stat().st_size:
                raise TunesmithError(f"{cfg.out} exists and was not written by this synth run", where="synth",
                                     fix="pass a new --out, or delete the file")
            self._append(self.path, {"settings": settings})
        self.questions = {e["seed"]: e["questions"] for e in events if e.get("kind") == "questions"}
        self.decided = {(e["seed"], e["index"], e["kind"]): e.get("removed") for e in events
                        if e.get("kind") in ("question", "answer")}
        rows = _read_jsonl(self.out)
        self.written = {(r["provenance"]["seed"], r["provenance"]["question_index"]) for r in rows}
        self.resumed = len(self.written)

    @staticmethod
    def _append(path: Path, obj: dict[str, Any]) -> None:
        append_jsonl(path, [obj])  # fsync'ed: a kill leaves at most a torn last line, cut on resume

    def note(self, kind: str, seed: str, **fields: Any) -> None:
        self._append(self.path, {"kind": kind, "seed": seed, **fields})
        if kind in ("question", "answer"):
            self.decided[(seed, fields["index"], kind)] = fields.get("removed")
        if kind == "questions":
            self.questions[seed] = fields["questions"]

    def write(self, row: SynthRow) -> None:
        self._append(self.out, row.to_json(self.fmt, self.settings))  # the row first: a kill between the two
        self.written.add((row.seed, row.index))                       # lines is found on resume by its key
        self.note("answer", row.seed, index=row.index, removed=None)


def _read_jsonl(path: Path) -> list[dict[str, Any]]:
    """The complete lines of a file being appended to; a torn last line (a kill mid-write) is cut off."""
    if not path.is_file():
        return []
    cut_torn_tail(path)
    return read_jsonl(path)


def synthesize(cfg: SynthConfig, say: Callable[[str], None] = print) -> SynthSummary | None:
    """Run `tunesmith synth`; None for --dry-run (which prints the first seed's prompts instead)."""
    seeds = read_seeds(cfg.seeds)
    words = seeds.words[: cfg.limit_seeds] if cfg.limit_seeds else seeds.words
    lang = cfg.lang or ("ko" if language_of(list(words)) == "ko" else "en")
    templates = prompts.load(lang, cfg.prompts)
    retriever = None
    if cfg.docs is not None:
        chunks = chunk_documents(cfg.docs, cfg.chunk_chars)
        say(f"docs: {len(chunks.passages)} passages from {cfg.docs}"
            + "".join(f"; skipped {n} {why}" for why, n in chunks.skipped.items()))
        retriever = Retriever(chunks, cfg.retriever)
    generator = open_generator(cfg.generator, cfg.api_model, say)
    settings = settings_of(cfg, lang, generator.model)
    journal = Journal(cfg, settings)
    embed = retriever.embed_queries if retriever is not None and retriever.dense is not None else None
    qfilter = filters.QuestionFilter(cfg.min_chars, cfg.lang, cfg.duplicate_similarity, embed)
    removed: Counter[str] = Counter()
    asked = 0
    with progress.bar("synth (seed words)", len(words)) as tick:
        for done, word in enumerate(words, 1):
            asked += _one_seed(word, done - 1, cfg, generator, templates, retriever, qfilter, journal, removed)
            tick(done, len(words))
            if done == 1 and not journal.written and len(words) > 1:
                _first_seed_failed(word, generator.name, lang, removed, asked)
    return SynthSummary(cfg.out, seeds.read, seeds.removed, len(words), asked, dict(removed), len(journal.written),
                        journal.resumed)


def _first_seed_failed(word: str, generator: str, lang: str, removed: Counter[str], asked: int) -> None:
    """The first seed word gave no usable row: stop before hours of the same, with what went wrong."""
    why = [f"removed, {reason}: {n}" for reason, n in removed.most_common()] or ["no question could be parsed"]
    korean = "the embedded default model (SmolLM2-135M) cannot write Korean: " if lang == "ko" else ""
    raise TunesmithError(f"the generator {generator} wrote no usable row for the first seed word {word!r} "
                         f"({asked} questions)", where="synth", problems=why,
                         fix=f"{korean}give a bigger instruct model: --generator a model folder or hub id in your "
                             "cache (`tunesmith models` lists them), or an OpenAI-compatible url with --api-model "
                             "(e.g. Ollama's http://127.0.0.1:11434/v1); or loosen a filter with --set (see "
                             "docs/config.md, synth options). The progress file keeps the first seed's work.")


def _questions(word: str, at: int, cfg: SynthConfig, generator: Any, templates: dict[str, str],
               retriever: Retriever | None, journal: Journal) -> list[str]:
    """The seed word's questions: from the progress file, or asked (a second time when too few came back)."""
    if word in journal.questions:
        return journal.questions[word]
    got: list[str] = []
    passages = retriever.search(word, cfg.top_k) if retriever is not None else ()
    for attempt in range(2):
        reply, _ = generator.chat(prompts.questions(templates, word, cfg.per_seed, passages),
                                  temperature=cfg.temperature,
                                  max_tokens=cfg.max_new_tokens, seed=cfg.seed * 100_003 + at * 7 + attempt)
        got += filters.parse_questions(reply)  # a reply cut at max_new_tokens: its last line may be cut short
        if len(got) >= cfg.per_seed:
            break
    journal.note("questions", word, questions=got[: cfg.per_seed])
    return got[: cfg.per_seed]


def _one_seed(word: str, at: int, cfg: SynthConfig, generator: Any, templates: dict[str, str],
              retriever: Retriever | None, qfilter: filters.QuestionFilter, journal: Journal,
              removed: Counter[str]) -> int:
    """Questions, answers and rows for one seed word; returns how many questions it got."""
    questions = _questions(word, at, cfg, generator, templates, retriever, journal)
    for index, question in enumerate(questions):
        key = (word, index)
        why = journal.decided.get((*key, "question"), "unseen")
        if why == "unseen":
            why = qfilter.reason(question)
            journal.note("question", word, index=index, question=question, removed=why)
        elif why is None:
            qfilter.remember(question)  # resumed: it still counts against later near-duplicates
        if why is not None:
            removed[why] += 1
            continue
        if key in journal.written:
            continue
        if (*key, "answer") in journal.decided:
            removed[journal.decided[(*key, "answer")]] += 1
            continue
        passages = retriever.search(question, cfg.top_k) if retriever is not None else ()
        # Answers at a low temperature: the questions bring the variety, the answers should follow the passages.
        answer, ended = generator.chat(prompts.answer(templates, question, passages),
                                       temperature=min(cfg.temperature, 0.3), max_tokens=cfg.max_new_tokens,
                                       seed=cfg.seed * 100_003 + at * 7 + 3 + index)
        why = filters.answer_reason(question, answer, passages, min_chars=cfg.min_chars, lang=cfg.lang,
                                    min_support=cfg.min_support, ended=ended, labels=prompts.labels(templates))
        if why is not None:
            removed[why] += 1
            journal.note("answer", word, index=index, removed=why)
            continue
        journal.write(SynthRow(word, index, question, answer.strip(), passages, generator.name))
    return len(questions)


def dry_run(cfg: SynthConfig, say: Callable[[str], None] = print) -> None:
    """Print what the first seed word's requests would be (with --docs: the passages its own words retrieve)."""
    seeds: Seeds = read_seeds(cfg.seeds)
    word = seeds.words[0]
    lang = cfg.lang or ("ko" if language_of(list(seeds.words)) == "ko" else "en")
    templates = prompts.load(lang, cfg.prompts)
    passages = ()
    if cfg.docs is not None:
        passages = Retriever(chunk_documents(cfg.docs, cfg.chunk_chars), cfg.retriever).search(word, cfg.top_k)
    say(f"seed words: {len(seeds.words)} ({seeds.read} lines read); prompts: {lang}; the first: {word!r}")
    for title, messages in (("questions request", prompts.questions(templates, word, cfg.per_seed, passages)),
                            ("answer request (the seed word standing in for a question)",
                             prompts.answer(templates, word, passages))):
        say(f"--- {title}")
        for m in messages:
            say(f"[{m.role}] {m.content}")
    for p in passages:
        say(f"    retrieved {p.source}: score {p.score:.4f}")
