"""Progress bars with an ETA for the slow phases (training steps, generation batches), drawn on stderr by rich.

Only on a terminal: in logs and CI the printed metric lines already show progress, and a bar would be noise.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any


@contextmanager
def captured_stderr() -> Iterator[Callable[[], str]]:
    """Send what is written to file descriptor 2 (C libraries' logs, third-party bars that no setting turns off)
    to a temporary file while the block runs; yields a function that returns the text captured so far."""
    import os
    import sys
    import tempfile

    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile() as sink:
        os.dup2(sink.fileno(), 2)

        def text() -> str:
            sink.seek(0)
            return sink.read().decode("utf-8", "replace")

        try:
            yield text
        finally:
            sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)


def _progress(console: Any = None, get_time: Callable[[], float] | None = None) -> Any:
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    console = console or Console(stderr=True)
    if not console.is_terminal:
        return None
    return Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                    TextColumn("ETA"), _remaining_column(), console=console, transient=True, get_time=get_time)


def remaining_seconds(elapsed: float | None, done: float, total: float | None) -> float | None:
    """The phase's time left at its average pace so far (None before the first update). rich's own column
    averages the updates of the last 30 s only: where a generation batch takes longer (45 rows in two updates,
    32 after 45 s and 13 after 82 s, on an AVX2 CPU) it said -:--:-- the whole phase."""
    if not elapsed or not done or total is None:
        return None
    return max(total - done, 0) * elapsed / done


def _remaining_column() -> Any:
    from rich.progress import ProgressColumn
    from rich.text import Text

    class Remaining(ProgressColumn):
        def render(self, task: Any) -> Text:
            left = remaining_seconds(task.elapsed, task.completed, task.total)
            if left is None:
                return Text("-:--:--", style="progress.remaining")
            minutes, seconds = divmod(round(left), 60)
            hours, minutes = divmod(minutes, 60)
            return Text(f"{hours}:{minutes:02d}:{seconds:02d}", style="progress.remaining")

    return Remaining()


@contextmanager
def bar(description: str, total: int) -> Iterator[Callable[[int, int], None]]:
    """Yield `update(done, total)` for a phase; a no-op off a terminal."""
    progress = _progress()
    if progress is None:
        yield lambda done, total: None
        return
    with progress:
        task = progress.add_task(description, total=total)
        yield lambda done, total: progress.update(task, completed=done, total=total)


def training_bar() -> Any:
    """A Trainer callback that draws optimizer steps with an ETA."""
    from transformers import TrainerCallback

    class TrainingBar(TrainerCallback):
        def __init__(self) -> None:
            self.progress, self.task = None, None

        def on_train_begin(self, args, state, control, **kw):  # noqa: ANN001
            if state.is_world_process_zero:
                self.progress = _progress()
            if self.progress is not None:
                self.progress.start()
                self.task = self.progress.add_task("training", total=state.max_steps, completed=state.global_step)

        def on_step_end(self, args, state, control, **kw):  # noqa: ANN001
            if self.progress is not None:
                self.progress.update(self.task, completed=state.global_step)

        def on_train_end(self, args, state, control, **kw):  # noqa: ANN001
            if self.progress is not None:
                self.progress.stop()

    return TrainingBar()


def stages(name: str, total: int, say: Callable[[str], None]) -> Callable[[str], None]:
    """`step(text)` says `name [i/total] text` with the seconds so far: a verb's stages, one line each, that
    read the same on a terminal and in a log (export: load, check prompts, merge, write, load back)."""
    import time

    start, done = time.perf_counter(), [0]

    def step(text: str) -> None:
        done[0] += 1
        say(f"{name} [{done[0]}/{total}] {text} ({time.perf_counter() - start:.0f} s so far)")

    return step
