"""progress.py: the bars' ETA on phases whose updates come rarely (generation in two token batches)."""

from __future__ import annotations

import io

from rich.console import Console

from tunesmith import progress


def test_the_eta_is_known_after_the_first_update_however_long_it_took():
    now = [0.0]
    bar = progress._progress(Console(file=io.StringIO(), force_terminal=True, width=200), get_time=lambda: now[0])
    task = bar.add_task("generating", total=45)
    bar.start_task(task)
    eta = bar.columns[-1]
    assert str(eta.render(bar.tasks[0])) == "-:--:--"
    now[0] = 45.0
    bar.update(task, completed=32)  # the first token batch: 32 rows in 45 s
    assert progress.remaining_seconds(bar.tasks[0].elapsed, 32, 45) == 13 * 45 / 32
    assert str(eta.render(bar.tasks[0])) == "0:00:18"
    now[0] = 3682.0
    bar.update(task, completed=44)  # an hour later: the average pace, 1 row left at 83.7 s a row
    assert str(eta.render(bar.tasks[0])) == "0:01:24"


def test_no_bar_off_a_terminal():
    assert progress._progress(Console(file=io.StringIO())) is None
