"""The run folder (issue 10): nothing outside it is ever deleted, one process writes it at a time, files are
whole or tolerated when torn."""

from __future__ import annotations

import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from tests.conftest import fails, tunesmith
from tunesmith import rundir
from tunesmith.errors import TunesmithError

SAMPLE = Path(__file__).resolve().parents[1] / "src" / "tunesmith" / "sample_data" / "counsel_en.jsonl"


def tree(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.mark.parametrize("name", ["..", "."])
def test_dot_names_with_overwrite_touch_nothing_outside_the_run_folder(tmp_path: Path, name: str):
    (tmp_path / "sb" / "a" / "runs" / "keep").mkdir(parents=True)
    (tmp_path / "sb" / "a" / "runs" / "keep" / "config.yaml").write_text("x")
    (tmp_path / "sb" / "a" / "sibling.txt").write_text("x")
    before = tree(tmp_path)
    res = tunesmith("train", "--data", str(SAMPLE), "--output-dir", "sb/a/runs", "--name", name, "--overwrite",
                    "--set", "train.max_steps=2", cwd=tmp_path)
    fails(res, f'"name": expected a plain folder name, not \'.\' or \'..\' (e.g. --name demo-2', f"(got {name!r})")
    assert tree(tmp_path) == before


def test_a_folder_tunesmith_did_not_make_is_neither_written_nor_deleted(tmp_path: Path):
    mine = tmp_path / "runs" / "photos"
    mine.mkdir(parents=True)
    (mine / "holiday.jpg").write_bytes(b"\xff\xd8")
    for overwrite in (False, True):
        with pytest.raises(TunesmithError, match="was not made by this tunesmith"):
            rundir.create(tmp_path / "runs", "photos", overwrite=overwrite, config_yaml="name: photos\n")
    assert tree(mine) == {"holiday.jpg": b"\xff\xd8"}


def test_a_symlinked_run_name_and_files_in_the_way_are_refused(tmp_path: Path):
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (elsewhere / "keep.txt").write_text("x")
    (tmp_path / "runs").mkdir()
    (tmp_path / "runs" / "link").symlink_to(elsewhere)
    (tmp_path / "runs" / "afile").write_text("x")
    (tmp_path / "notadir").write_text("x")
    with pytest.raises(TunesmithError, match="exists and is not a folder"):
        rundir.create(tmp_path / "runs", "link", overwrite=True, config_yaml="c")
    with pytest.raises(TunesmithError, match="exists and is not a folder"):
        rundir.create(tmp_path / "runs", "afile", overwrite=True, config_yaml="c")
    with pytest.raises(TunesmithError, match="is a file, not a folder"):
        rundir.create(tmp_path / "notadir", "x", overwrite=True, config_yaml="c")
    assert (elsewhere / "keep.txt").read_text() == "x" and (tmp_path / "runs" / "afile").read_text() == "x"


def test_name_and_output_dir_that_are_files_exit_2_through_the_cli(tmp_path: Path, tiny_model_dir: Path,
                                                                 small_jsonl: Path):
    (tmp_path / "runs").mkdir()
    (tmp_path / "runs" / "taken").write_text("x")
    (tmp_path / "out.txt").write_text("x")
    common = ["--data", str(small_jsonl), "--model", str(tiny_model_dir), "--set", "data.min_eval=4"]
    fails(tunesmith("train", *common, "--name", "taken", "--overwrite", cwd=tmp_path),
          "runs/taken exists and is not a folder")
    fails(tunesmith("train", *common, "--output-dir", "out.txt", cwd=tmp_path), "out.txt is a file, not a folder")
    assert (tmp_path / "runs" / "taken").read_text() == "x" and (tmp_path / "out.txt").read_text() == "x"


def test_overwrite_empties_the_folder_but_remove_never_leaves_it(tmp_path: Path):
    run, resumed = rundir.create(tmp_path, "r", overwrite=False, config_yaml="a\n")
    (run.root / "metrics.jsonl").write_text("{}\n")
    run.unlock()
    run2, resumed2 = rundir.create(tmp_path, "r", overwrite=True, config_yaml="b\n")
    assert not resumed and not resumed2
    assert sorted(p.name for p in run2.root.iterdir()) == [".lock", ".tunesmith-run", "config.yaml", "data", "eval"]
    with pytest.raises(RuntimeError, match="refusing to delete"):
        run2.remove(tmp_path / "outside.txt")
    with pytest.raises(RuntimeError, match="refusing to delete"):
        run2.remove(run2.root / ".." / "r")
    run2.unlock()


HOLDER = textwrap.dedent("""
    import sys, time
    from pathlib import Path
    from tunesmith import rundir
    rundir.create(Path(sys.argv[1]), "shared", overwrite=False, config_yaml="held\\n")
    print("locked", flush=True)
    time.sleep(120)
""")


def test_a_second_process_is_refused_while_the_first_holds_the_run(tmp_path: Path, tiny_model_dir: Path,
                                                                 small_jsonl: Path):
    holder = subprocess.Popen([sys.executable, "-c", HOLDER, str(tmp_path / "runs")], stdout=subprocess.PIPE,
                              text=True)
    try:
        assert holder.stdout.readline().strip() == "locked"
        with pytest.raises(TunesmithError, match=f"in use by another tunesmith process \\(pid {holder.pid} on "):
            rundir.create(tmp_path / "runs", "shared", overwrite=False, config_yaml="held\n")
        res = tunesmith("train", "--data", str(small_jsonl), "--model", str(tiny_model_dir), "--name", "shared",
                        "--overwrite", "--set", "data.min_eval=4", cwd=tmp_path)
        fails(res, f"runs/shared is in use by another tunesmith process (pid {holder.pid} on ",
              "how to fix: wait for it to finish (or stop it), or pick another --name")
        assert (tmp_path / "runs" / "shared" / "config.yaml").read_text() == "held\n"  # nothing replaced
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait()
    # The kernel dropped the dead holder's lock; its pid is still in the file, so the take-over is reported.
    said: list[str] = []
    run, resumed = rundir.create(tmp_path / "runs", "shared", overwrite=False, config_yaml="held\n", say=said.append)
    assert resumed and len(said) == 1 and f"its last holder (pid {holder.pid} on " in said[0]
    run.unlock()
    assert (run.root / ".lock").read_text() == ""  # released cleanly: the next holder has nothing to report


def test_a_finished_run_is_refused_before_any_model_loads_and_demo_takes_output_dir(tmp_path: Path):
    done = tmp_path / "elsewhere" / "demo"
    done.mkdir(parents=True)
    (done / rundir.MARKER).write_text(rundir.MARKER_TEXT)
    (done / "report.html").write_text("<html></html>")
    # The model named does not exist: had it been loaded first, that would be the error.
    res = tunesmith("demo", "--output-dir", str(tmp_path / "elsewhere"), "--model", str(tmp_path / "no-model"))
    fails(res, f"run folder {done} holds a finished run", "--overwrite")


def test_a_resumed_run_drops_the_metrics_and_answers_logged_after_its_checkpoint(tmp_path: Path):
    from tunesmith.runfiles import LogRow, WrittenAnswer

    run, _ = rundir.create(tmp_path, "r", overwrite=False, config_yaml="name: r\n")
    for step in (1, 2, 3):
        run.append_metrics(LogRow(step, loss=1.0 / step))
        run.append_answers([WrittenAnswer(step, "p", f"a{step}", {"answer": 0.5}),
                            WrittenAnswer(step, "p", f"h{step}", {"answer": None}, held_out=True)])
    run.keep_metrics_up_to(2)
    assert [r.step for r in run.read_metrics()] == [1, 2]
    assert [(a.step, a.answer, a.held_out) for a in run.read_answers()] == [
        (1, "a1", False), (1, "h1", True), (2, "a2", False), (2, "h2", True)]
    run.unlock()
