"""Every run-folder record round-trips through its JSON; a run folder written before the records still loads."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from tunesmith import diskio, report, rundir
from tunesmith.errors import TunesmithError
from tunesmith.records import Difference, EvalReport, EvalSettings, Generation, JudgeSummary, ModelEval, Skip
from tunesmith.runfiles import DataReport, FileReport, LogRow, Manifest, Plan

OLD_RUN = Path(__file__).parent / "fixtures" / "run_written_by_5ca8684"  # tunesmith before typed records


def roundtrip(record):  # noqa: ANN001, ANN201
    return type(record).from_json(json.loads(json.dumps(record.to_json())))


SETTINGS = EvalSettings(max_rows=4, max_new_tokens=8, temperature=0.0, top_p=1.0, repetition_penalty=1.0, seed=0)
RECORDS = [
    Plan(("rows: 12 train", "steps: 3"), steps_per_epoch=3, total_steps=6),
    DataReport(18, 12, 2, 1, (FileReport("/d/a.jsonl", "messages", "utf-8", 18, 16, 2),),
               (Skip("a.jsonl:3", "not valid JSON"),), (Skip("a.jsonl:9", "300 tokens, longer than x: dropped"),),
               ("only 2 eval rows",)),
    Manifest("abc-dirty", 42, 42, "default", "/m", {"/d/a.jsonl": "f" * 64}, {"torch": "2.13.0", "x": None},
             "3.11.7", "Linux", {"cpu cores": 2, "native bf16 on CPU": True}),
    LogRow(0, 0.0, eval_loss=2.5), LogRow(4, 1.0, loss=1.25, learning_rate=1e-4, tokens_per_s=210.5),
    SETTINGS,
    Generation("a.jsonl:1", "prompt", "ref", "gen\u2028with a line separator", stopped=False),
    JudgeSummary("j", 4, 1, 2, 1, 0, -0.25, -0.75, 0.25, "no clear difference"),
]


@pytest.mark.parametrize("record", RECORDS, ids=lambda r: type(r).__name__)
def test_each_record_round_trips(record):  # noqa: ANN001
    assert roundtrip(record) == record


def test_the_eval_report_round_trips_with_its_generations(tmp_path: Path):
    gens = {label: (Generation("a:1", "p", "r", f"{label} says"),) for label in ("base", "tuned")}
    models = tuple(ModelEval(label, f"spec {label}", {"chrf": 10.0 * i, "perplexity": 3.0},
                             ({"chrf": 10.0 * i, "nll": 1.0 - i / 10},), gens[label], 2.0 - i)
                   for i, label in enumerate(gens))
    ev = EvalReport(models, {"tuned": {"chrf": Difference(10.0, 5.0, 15.0, 1, 1),
                                       "nll": Difference(-0.1, -0.2, -0.05, 1, -1),
                                       "chars": Difference(3.0, 1.0, 5.0, 1, 0)}},
                    "en", "13a", None, SETTINGS, JudgeSummary("j", 1, 1, 0, 0, 0, 1.0, 1.0, 1.0, "better"))
    assert ev.verdicts == {"tuned": {"chrf": "better", "nll": "better", "chars": "higher"}}
    store = rundir.EvalDir(tmp_path)
    for label, g in gens.items():
        store.write_generations(label, g)
    store.write_summary(ev)
    assert store.read_summary() == ev


def test_a_run_folder_from_before_the_records_still_reports(tmp_path: Path):
    run = rundir.RunDir(tmp_path / "old")
    shutil.copytree(OLD_RUN, run.root)
    assert run.read_data_report().not_trained == ()  # not counted then; read as none
    assert run.read_plan().total_steps == 4 and run.read_manifest().seed == 42
    ev = run.evaluation().read_summary()
    assert [m.label for m in ev.models] == ["base", "tuned"] and ev.settings.max_new_tokens == 8
    # Old summaries stored verdicts, not directions: the verdicts read back are the ones written.
    old = json.loads((OLD_RUN / "eval" / "summary.json").read_text())["differences"]["tuned"]
    assert ev.verdicts["tuned"] == {k: d["verdict"] for k, d in old.items()}
    path = report.rebuild(run.root, say=lambda _: None)  # the old folder gets its marker: it has the run's files
    assert "Did tuning help?" in path.read_text() and (run.root / rundir.MARKER).is_file()


def test_a_file_missing_what_the_record_needs_says_an_older_tunesmith_wrote_it(tmp_path: Path):
    run = rundir.RunDir(tmp_path)
    diskio.write_json(run.plan, {"lines": ["x"]})
    with pytest.raises(TunesmithError) as err:
        run.read_plan()
    assert err.value.render().startswith(f"{run.plan}: no steps_per_epoch, total_steps: it was written by an "
                                         "older tunesmith")
