"""`chat --collect` (issue 30): driven through stdin as a user types, it writes preference pairs in TRL's format
and thumbs as KTO rows, appended, resumable without repeats, and the files read back as preference data."""

from __future__ import annotations

import re

from tests.conftest import fails, tunesmith
from tunesmith.collect import kto_path
from tunesmith.data import preference
from tunesmith.diskio import read_jsonl

SESSION = ("I can't sleep before exams.\n1\n"
           "Nobody calls me any more.\ne2\nThat sounds lonely. Who do you miss most?\n"
           "My boss shouts at me.\nb\n"
           "I failed my driving test.\nx\n+1\n"
           "/exit\n")


def test_collect_writes_pairs_and_ratings_that_read_back_as_preference_data(tmp_path, tiny_model_dir):
    out = tmp_path / "prefs.jsonl"
    res = tunesmith("chat", str(tiny_model_dir), "--collect", str(out), "--max-new-tokens", "6", input=SESSION,
                    cwd=tmp_path)
    assert res.returncode == 0, res.stderr
    shown = re.findall(r"^\[(\d)\] (.*)$", res.stdout, flags=re.M)
    assert len(shown) == 8  # two answers for each of the four prompts
    answers = [text.strip() for _, text in shown]
    assert "unknown choice 'x'" in res.stdout
    pairs = read_jsonl(out)
    assert len(pairs) == 2
    # "1": the first answer chosen over the second; "e2": the edit chosen over the second answer
    assert pairs[0]["prompt"] == [{"role": "user", "content": "I can't sleep before exams."}]
    assert (pairs[0]["chosen"][0]["content"], pairs[0]["rejected"][0]["content"]) == (answers[0], answers[1])
    assert pairs[1]["chosen"][0]["content"] == "That sounds lonely. Who do you miss most?"
    assert pairs[1]["rejected"][0]["content"] == answers[3]
    rated = read_jsonl(kto_path(out))  # "b": both answers bad; "+1": the first answer good
    assert [(r["completion"][0]["content"], r["label"]) for r in rated] == \
        [(answers[4], False), (answers[5], False), (answers[6], True)]
    assert "2 pairs written" in res.stdout and "3 rated answers" in res.stdout
    read = preference.load(out)
    assert read.format == "trl" and len(read.pairs) == 2 and not read.skipped
    kto = preference.load(kto_path(out))
    assert kto.format == "kto" and [r.good for r in kto.rated] == [False, False, True]

    # The same session again (same seeds: the same answers) continues the files and writes nothing twice.
    again = tunesmith("chat", str(tiny_model_dir), "--collect", str(out), "--max-new-tokens", "6", input=SESSION,
                      cwd=tmp_path)
    assert again.returncode == 0, again.stderr
    assert "(5 rows there already)" in again.stdout and "5 already there (not written again)" in again.stdout
    assert len(read_jsonl(out)) == 2 and len(read_jsonl(kto_path(out))) == 3


def test_collect_refuses_a_bad_file_or_versus_before_loading_a_model(tmp_path):
    fails(tunesmith("chat", "default", "--collect", str(tmp_path / "prefs.csv"), cwd=tmp_path),
          "must end in .jsonl", "--collect")
    fails(tunesmith("chat", "default", "--collect", str(tmp_path / "no" / "p.jsonl"), cwd=tmp_path),
          "does not exist")
    fails(tunesmith("chat", "default", "--versus", "base", cwd=tmp_path), "only with --collect")
