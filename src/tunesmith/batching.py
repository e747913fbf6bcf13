"""Dynamic batching for `tunesmith serve`: greedy requests that arrive together are generated in one
`model.generate` call (left-padded, as eval batches its rows), each streamed on its own.

A request joins the next batch: the batcher takes requests while they keep arriving (each within WINDOW_S of the
last, at most MAX_WAIT_S after the first, up to MAX_ROWS) and generates them together; each row stops on its own (its max_new_tokens, its stop strings, its
end-of-turn token, or its client going away), and its pieces go to its own queue as they are decoded.
Only greedy requests are batched: their answers are the same alone or together (left padding with the
attention mask gives each row the positions it has alone). A sampled request draws from torch's RNG with its
seed and so runs alone (chat.stream); the batcher holds the same lock while it generates, so the two never
overlap. Decoding a small model on a CPU is bound by reading the weights, not by arithmetic, so eight rows
take little longer per token than one (bench/serve_batching.py measures it).
"""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

from tunesmith import generation, template
from tunesmith.chat import Reply, first_stop
from tunesmith.config import EvalConfig

MAX_ROWS = 8
WINDOW_S = 0.05  # a batch takes the next request that comes within this of the last one ...
MAX_WAIT_S = 0.25  # ... for at most this long after its first (eight HTTP clients started together arrived
                   # over ~60 ms: a fixed 20 ms window split them into batches of 6 and 2)


@dataclass
class _Job:
    """One request inside the batcher: its prompt, limits, and the queue its pieces go to."""

    ids: list[int]
    max_new: int
    stop: list[str]
    cancel: threading.Event
    out: queue.Queue = field(default_factory=queue.Queue)
    tokens: list[int] = field(default_factory=list)
    text: str = ""  # what was sent (whole characters, cut before a stop string)
    done: bool = False  # its Reply was sent: later tokens of the batch (padding) are not its own
    ended: bool = False  # by itself (end-of-turn token or stop string), not at max_new_tokens


class Batcher:
    """Greedy generations of one model, batched; `stream` has chat.stream's contract (pieces, then a Reply)."""

    def __init__(self, model: Any, tokenizer: Any, settings: EvalConfig, lock: threading.Lock) -> None:
        self.model, self.tokenizer, self.settings, self.lock = model, tokenizer, settings, lock
        self.pending: queue.Queue[_Job] = queue.Queue()
        self.eot = template.end_of_turn_ids(tokenizer)
        self.sizes: list[int] = []  # rows of each batch generated (what the tests and the bench look at)
        threading.Thread(target=self._loop, daemon=True, name="tunesmith-batcher").start()

    def stream(self, prompt: str, max_new_tokens: int, stop: Sequence[str] = (),
               cancel: threading.Event | None = None) -> Iterator[str | Reply]:
        ids = self.tokenizer(prompt, add_special_tokens=False)["input_ids"]
        job = _Job(ids, max_new_tokens, [s for s in stop if s], cancel or threading.Event())
        self.pending.put(job)
        try:
            while True:
                item = job.out.get()
                if isinstance(item, BaseException):
                    raise item
                yield item
                if isinstance(item, Reply):
                    return
        finally:
            job.cancel.set()  # a consumer that stops reading ends its row at the next token

    def _loop(self) -> None:
        while True:
            jobs = [self.pending.get()]
            deadline = time.monotonic() + MAX_WAIT_S
            while len(jobs) < MAX_ROWS:  # take requests while they keep coming (each within WINDOW_S of the last)
                try:
                    jobs.append(self.pending.get(timeout=max(0.0, min(WINDOW_S, deadline - time.monotonic()))))
                except queue.Empty:
                    break
            for j in jobs:
                if j.cancel.is_set():  # gone before its batch started
                    self._finish(j)
            jobs = [j for j in jobs if not j.done]
            if not jobs:
                continue
            try:
                with self.lock:
                    self._generate(jobs)
            except BaseException as err:  # noqa: BLE001 - every waiting request hears of it; the loop goes on
                for j in jobs:
                    if not j.done:
                        j.out.put(err)

    def _generate(self, jobs: list[_Job]) -> None:
        import torch

        width = max(len(j.ids) for j in jobs)
        pad = self.tokenizer.pad_token_id if self.tokenizer.pad_token_id is not None else 0
        input_ids = torch.tensor([[pad] * (width - len(j.ids)) + j.ids for j in jobs])
        mask = torch.tensor([[0] * (width - len(j.ids)) + [1] * len(j.ids) for j in jobs])
        settings = self.settings.model_copy(update={"max_new_tokens": max(j.max_new for j in jobs),
                                                    "temperature": 0.0})
        kwargs = generation.generation_kwargs(self.tokenizer, settings)
        self.sizes.append(len(jobs))
        self.model.eval()
        with torch.inference_mode():
            self.model.generate(input_ids=input_ids.to(self.model.device), attention_mask=mask.to(self.model.device),
                                streamer=_Rows(self, jobs), stopping_criteria=[_RowsDone(jobs)], **kwargs)
        for j in jobs:
            self._finish(j)

    def _put(self, job: _Job, token: int) -> None:
        """One new token of a running row: decode, cut at a stop string, send the new whole characters; a row
        that ended (end-of-turn, stop string, its max_new_tokens, cancelled) gets its Reply now, not when the
        batch ends."""
        job.tokens.append(token)
        if token in self.eot:
            job.ended = True
        else:
            text = generation.whole_characters(self.tokenizer.decode(job.tokens, skip_special_tokens=True))
            cut = first_stop(text, job.stop)
            if cut is not None:
                text, job.ended = text[:cut], True
            if len(text) > len(job.text) and text.startswith(job.text):
                job.out.put(text[len(job.text):])
                job.text = text
        if job.ended or len(job.tokens) >= job.max_new or job.cancel.is_set():
            self._finish(job)

    def _finish(self, job: _Job) -> None:
        if not job.done:
            job.done = True
            job.out.put(Reply(job.text.strip(), job.ended, len(job.ids), len(job.tokens)))


class _Rows:
    """generate's streamer for a batch: the first `put` is the prompt (skipped), then one token per row a step."""

    def __init__(self, batcher: Batcher, jobs: list[_Job]) -> None:
        self.batcher, self.jobs, self.prompt_seen = batcher, jobs, False

    def put(self, value: Any) -> None:
        if not self.prompt_seen:
            self.prompt_seen = True
            return
        for job, token in zip(self.jobs, value.reshape(-1).tolist()):
            if not job.done:
                self.batcher._put(job, token)

    def end(self) -> None:
        pass


class _RowsDone:
    """A StoppingCriteria per row: its own max_new_tokens, a stop string or end-of-turn seen, or cancelled."""

    def __init__(self, jobs: list[_Job]) -> None:
        self.jobs = jobs

    def __call__(self, input_ids: Any, scores: Any, **_: Any) -> Any:
        import torch

        done = [j.done or j.cancel.is_set() for j in self.jobs]
        return torch.tensor(done, dtype=torch.bool, device=input_ids.device)
