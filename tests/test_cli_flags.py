"""Every verb's bad flags through the real CLI: exit 2, a message that names the flag as typed, no traceback.

Options go through the config's own validation (config.section / --set), so a typo in a choice gets the same
did-you-mean as a typo in a config file. Typer's own usage errors (unknown flag, a word for a number) exit 2 too.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from tests.conftest import SAMPLE, tunesmith

DATA = str(SAMPLE / "counsel_en.jsonl")
GE = "Input should be greater than or equal to"

# (args, what stderr must contain); "{tmp}" is the test's tmp dir, where a folder "dir", a file "taken.yaml" and a
# file "a-file" exist. Each case fails before any model loads, so the whole walk takes seconds.
CASES: list[tuple[list[str], str]] = [
    (["inspect", DATA, "--format", "sharegtp"], '"--format": unknown format "sharegtp" (did you mean "sharegpt"?)'),
    (["inspect", DATA, "--encoding", "utf-88"], '"--encoding": unknown encoding "utf-88"'),
    (["inspect", DATA, "--max-length", "0"], '"--max-length": expected auto or a whole number of tokens >= 16 (got \'0\')'),
    (["inspect", DATA, "--role", "therapist"], "bad --role 'therapist'"),
    (["inspect", DATA, "--column", "=q"], "bad --column '=q'"),
    (["preview", DATA, "--supervise", "asistant"], '"--supervise": Input should be \'assistant\', \'last\' or '
                                                    '\'all\' (got \'asistant\') (did you mean "assistant"?)'),
    (["preview", DATA, "--max-length", "aut"], '"--max-length": expected auto or a whole number of tokens >= 16 '
                                              "(got 'aut')"),
    (["preview", DATA, "-n", "-1"], "-n must be 0 or more (got -1)"),
    (["plan", "--data", DATA, "--epochs", "0"], '"train.epochs": Input should be greater than 0 (got 0.0)'),
    (["plan", "--data", DATA, "--batch-size", "0"], f'"train.batch_size": {GE} 1 (got 0)'),
    (["plan", "--data", DATA, "--lr", "-1"], '"train.learning_rate": Input should be greater than 0 (got -1.0)'),
    (["plan", "--data", DATA, "--lora-r", "0"], f'"lora.r": {GE} 1 (got 0)'),
    (["plan", "--data", DATA, "--set", "data.format=alpacca"], 'unknown format "alpacca" (did you mean "alpaca"?)'),
    (["plan", "--data", DATA, "--set", "train.optimizer=adamw_torc"], '(did you mean "adamw_torch"?)'),
    (["plan", "--data", DATA, "--set", "train.lr_scheduler=cosin"], 'unknown scheduler "cosin" (did you mean'),
    (["plan", "--data", DATA, "--set", "template.supervise=asistant"], '(did you mean "assistant"?)'),
    (["plan", "--data", DATA, "--load-8bit", "--load-4bit"], "--load-8bit and --load-4bit exclude each other"),
    (["train", "--data", DATA, "--name", "a b"], '"name": String should match pattern'),
    (["train", "--data", DATA, "--set", "train.method=lorra"], '"train.method": Input should be \'lora\' or '
                                                                '\'full\' (got \'lorra\') (did you mean "lora"?)'),
    (["train", "--data", DATA, "--set", "train.report_to=[wandbb]"], '"train.report_to.0": Input should be '
                                                                      "'tensorboard' or 'wandb' (got 'wandbb')"),
    (["train", "--data", DATA, "--set", "lora.dropout=1"], '"lora.dropout": Input should be less than 1 (got 1)'),
    (["train", "--set", "train.epochs=1"], "nothing to train on"),
    (["demo", "--set", "train.epochs=0"], '"train.epochs": Input should be greater than 0 (got 0)'),
    (["demo", "--name", "a/b"], '"name": String should match pattern'),
    (["eval", "{tmp}/dir", "--limit", "0"], f'"--limit": {GE} 1 (got 0)'),
    (["eval", "{tmp}/dir", "--max-new-tokens", "0"], f'"--max-new-tokens": {GE} 1 (got 0)'),
    (["eval", "{tmp}/dir", "--temperature", "-1"], f'"--temperature": {GE} 0 (got -1.0)'),
    (["eval", "{tmp}/dir", "--top-p", "1.5"], '"--top-p": Input should be less than or equal to 1 (got 1.5)'),
    (["eval", "{tmp}/dir", "--repetition-penalty", "0"], '"--repetition-penalty": Input should be greater than 0'),
    (["eval", "{tmp}/dir", "--judge-url", "http://127.0.0.1:9/v1"], "--judge-url and --judge-model go together"),
    (["eval", "{tmp}/dir", "--models", ","], "error: --models ',': it names no model"),
    (["eval", "{tmp}/dir"], "is not a run folder (no config.yaml)"),
    (["report", "{tmp}/dir"], "is not a run folder (no config.yaml)"),
    (["compare", "--models", "default", "--prompts", DATA, "--batch-size", "0"], f'"--batch-size": {GE} 1 (got 0)'),
    (["compare", "--models", "default", "--prompts", DATA, "--max-new-tokens", "0"], '"--max-new-tokens": '),
    (["compare", "--models", ",", "--prompts", DATA], "it names no model"),
    (["compare", "--models", "default", "--prompts", DATA, "--csv", "{tmp}/a-file/x.csv"], "cannot create the folder"),
    (["tokens", "--add", "<x>"], "--add needs --out DIR"),
    (["tokens", "--csv", "{tmp}/a-file/t.csv"], "cannot create the folder for the CSV"),
    (["init", "--out", "{tmp}/dir"], "--out is a folder"),
    (["init", "--out", "{tmp}/taken.yaml"], "already exists"),
]
# Typer's own usage errors: exit 2, printed with the same "error:" line as ours (not typer's boxed " Error ").
USAGE: list[list[str]] = [
    ["inspect", DATA, "--formatt", "x"],
    ["plan", "--data", DATA, "--epochs", "abc"],
    ["train", "--overwrite=maybe"],
    ["compare", "--models", "default"],  # --prompts is required
    ["eval"],  # RUN is required
    ["no-such-verb"],
]


def test_every_verb_refuses_bad_flags_with_exit_2_and_no_traceback(tmp_path: Path):
    (tmp_path / "dir").mkdir()
    (tmp_path / "taken.yaml").write_text("name: x\n")
    (tmp_path / "a-file").write_text("x")

    def run(args: list[str]):  # noqa: ANN202
        return tunesmith(*(a.replace("{tmp}", str(tmp_path)) for a in args), cwd=tmp_path, timeout=300,
                         env={**__import__("os").environ, "TUNESMITH_NO_TCMALLOC": "1"})

    with ThreadPoolExecutor(4) as pool:  # ~0.3 s of start-up each; four at a time
        results = list(pool.map(run, [args for args, _ in CASES] + USAGE))
    problems = []
    for (args, expected), res in zip(CASES, results):
        if res.returncode != 2 or "Traceback" in res.stderr or "\nerror: " not in "\n" + res.stderr \
                or expected not in res.stderr:
            problems.append(f"{' '.join(args)} -> exit {res.returncode}, expected {expected!r}:\n{res.stderr}")
    for args, res in zip(USAGE, results[len(CASES):]):
        if res.returncode != 2 or "Traceback" in res.stderr or "\nerror: " not in "\n" + res.stderr or "Error" in res.stderr:
            problems.append(f"{' '.join(args)} -> exit {res.returncode}:\n{res.stderr}")
    assert not problems, "\n\n".join(problems)
    assert not (tmp_path / "runs").exists()  # nothing was started
