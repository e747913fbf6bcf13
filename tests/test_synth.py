"""tunesmith synth: seed words, retrieval on planted passages, every filter with its count, kill and resume, and
the whole pipeline against `tunesmith serve` on a real model (HTTP round trips, no mocked client)."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.conftest import fails, tunesmith

DOCS = {
    "lease.txt": "A lease agreement is a contract in which a landlord lets a tenant use a home for a fixed term in "
                 "return for rent. The lease names the rent, the term, the deposit and who pays for repairs.",
    "mortgage.md": "A mortgage is a loan secured by a house: if the borrower stops paying, the lender may sell the "
                   "house. A mortgage lender checks income, debts and the value of the house before lending.",
    "deposit.txt": "A security deposit is money a tenant pays a landlord at the start of a lease. It is returned "
                   "when the lease ends, minus the cost of damage beyond normal wear.",
    "garden.txt": "Tomatoes grow best in full sun with regular watering. Pinch off side shoots to get larger fruit.",
    "trains.txt": "High-speed trains run on dedicated tracks and reach 300 kilometres per hour.",
}

QUESTIONS = {
    "lease": ["What is a lease agreement?", "What is a lease agreement?", "Hi", "임대차 계약이란 무엇인가요?",
              "Here are some questions:"],
    "deposit": ["How is a security deposit returned?", "What can a landlord deduct from a deposit?",
                "When must a deposit be returned?", "What is the capital of France?",
                "A deposit protects the landlord against damage."],
    "mortgage": ["What is a mortgage?", "How do mortgage rates work?", "What is a fixed-rate mortgage?",
                 "What does a mortgage lender check?", "# Mortgages"],
}
# question -> (answer, finish_reason)
ANSWERS = {
    "What is a lease agreement?": ("A lease agreement is a contract in which a landlord lets a tenant use a home "
                                   "for a fixed term in return for rent.", "stop"),
    "How is a security deposit returned?": ("", "stop"),
    "What can a landlord deduct from a deposit?": ("What can a landlord deduct from a deposit?", "stop"),
    "When must a deposit be returned?": ("보증금은 임대차가 끝날 때 돌려받습니다.", "stop"),
    "What is the capital of France?": ("Paris has been France's capital since the tenth century.", "stop"),
    "What is a mortgage?": ("A mortgage is a loan secured by a house; the lender may sell the house if the "
                            "borrower stops paying.", "stop"),
    "How do mortgage rates work?": ("Reference passages: [1] A mortgage is a loan secured by a house", "stop"),
    "What is a fixed-rate mortgage?": ("A mortgage is a loan secured by a house and the", "length"),
    "What does a mortgage lender check?": ("A mortgage lender checks income, debts and the value of the house "
                                           "before lending.", "stop"),
}
PLANTED_REMOVALS = {"near-duplicate question": 1, "question too short": 1, "question in the wrong language": 1,
                    "not a question (a heading)": 2, "not a question (no question mark)": 1,
                    "answer empty or too short": 1, "answer repeats the question": 1,
                    "answer in the wrong language": 1, "answer not supported by its passages": 1,
                    "answer echoes the prompt": 1, "answer cut off at max_new_tokens": 1}


def scripted(delay: float = 0.0):  # noqa: ANN201
    """A generator server that answers from the tables above, by what the request asks."""
    def reply(body: dict, headers: dict) -> tuple[int, object]:
        time.sleep(delay)
        user = body["messages"][-1]["content"]
        if user.startswith("Topic: "):
            seed = user.split("\n", 1)[0].removeprefix("Topic: ")
            text, finish = "\n".join(f"{i}. {q}" for i, q in enumerate(QUESTIONS[seed], 1)), "stop"
        else:
            text, finish = ANSWERS[user.split("Question: ", 1)[1].split("\n", 1)[0]]
        return 200, {"choices": [{"message": {"role": "assistant", "content": text}, "finish_reason": finish}]}
    return reply


@pytest.fixture
def inputs(tmp_path: Path) -> tuple[Path, Path]:
    seeds = tmp_path / "seeds.txt"
    seeds.write_text("lease\n\n  lease \n# real estate\ndeposit\nmortgage\n", encoding="utf-8")
    docs = tmp_path / "docs"
    docs.mkdir()
    for name, text in DOCS.items():
        (docs / name).write_text(text + "\n", encoding="utf-8")
    (docs / "scan.pdf").write_bytes(b"%PDF-1.4")
    return seeds, docs


def _cfg(seeds: Path, docs: Path, out: Path, url: str, **extra):  # noqa: ANN003, ANN202
    from tunesmith.config import SynthConfig

    return SynthConfig(seeds=seeds, docs=docs, out=out, generator=url, api_model="scripted", per_seed=5,
                       lang="en", top_k=2, **extra)


def test_seed_words_are_trimmed_deduplicated_and_counted_in_any_encoding(tmp_path: Path):
    from tunesmith.synth.seeds import read_seeds

    path = tmp_path / "seeds.txt"
    path.write_bytes("전세 계약\n\n전세  계약\n# 부동산\nDSR\ndsr\n깡통 전세\n".encode("cp949"))
    seeds = read_seeds(path)
    assert seeds.words == ("전세 계약", "DSR", "깡통 전세")
    assert seeds.read == 7 and seeds.removed == {"empty": 1, "duplicate": 2, "comment": 1}
    assert len(seeds.words) + sum(seeds.removed.values()) == seeds.read


def test_retrieval_ranks_the_planted_korean_passage_first(tmp_path: Path):
    """Each question's passage among 9 distractors on the same topics (real-estate terms) and off-topic ones:
    E5 (the default), BM25 and hybrid all rank it first, for every question."""
    from tunesmith.synth.retrieve import Retriever, chunk_documents

    planted = {
        "전세 계약 기간은 보통 몇 년인가요?": "전세 계약 기간은 주택임대차보호법에 따라 보통 2년이며, 세입자는 계약갱신청구권으로 2년 더 살 수 있다.",
        "DSR은 어떻게 계산하나요?": "DSR은 한 해 동안 갚아야 하는 모든 대출의 원금과 이자를 연소득으로 나눈 비율이다.",
        "확정일자를 받으면 무엇이 좋은가요?": "전입신고를 하고 확정일자를 받으면 세입자는 우선변제권을 얻어 경매에서도 보증금을 먼저 돌려받을 수 있다.",
        "깡통 전세는 왜 위험한가요?": "빚과 보증금을 합한 금액이 집값에 가까운 깡통 전세는 집이 팔려도 보증금을 다 돌려받지 못할 위험이 크다.",
        "재건축 조합은 무엇을 하나요?": "재건축 조합은 낡은 아파트의 소유자들이 모여 새 건물을 짓는 사업을 추진하는 단체이다.",
    }
    distractors = ["월세는 매달 집세를 내는 임대 방식이다.", "LTV는 집값에 비해 받을 수 있는 대출의 비율이다.",
                   "부동산 중개수수료는 거래 금액에 따라 요율이 정해진다.", "김치찌개는 잘 익은 김치로 끓인다.",
                   "장마철에는 비가 많이 내린다."]
    docs = tmp_path / "docs"
    docs.mkdir()
    rows = [{"text": t} for t in [*planted.values(), *distractors]]
    (docs / "passages.jsonl").write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows),
                                         encoding="utf-8")
    chunks = chunk_documents(docs, 600)
    assert len(chunks.passages) == 10
    for kind in ("e5", "bm25", "hybrid"):
        retriever = Retriever(chunks, kind)
        for i, question in enumerate(planted):
            top = retriever.search(question, 3)
            assert top[0].source == f"passages.jsonl#{i}", (kind, question, top)
            assert top[0].score >= top[1].score >= top[2].score
            assert (top[0].dense is None) == (kind == "bm25") and (top[0].bm25 is None) == (kind == "e5")


def test_filters_remove_the_planted_rows_with_the_right_counts(serve, inputs, tmp_path: Path):
    from tunesmith import synth

    url, seen = serve(scripted())
    seeds, docs = inputs
    out = tmp_path / "out.jsonl"
    summary = synth.synthesize(_cfg(seeds, docs, out, url), say=lambda _: None)
    assert summary.seeds_read == 6 and summary.seeds_removed == {"empty": 1, "duplicate": 1, "comment": 1}
    assert summary.seeds_used == 3 and summary.questions == 15
    assert summary.removed == PLANTED_REMOVALS
    assert summary.written == 3 == summary.questions - sum(summary.removed.values())
    rows = [json.loads(line) for line in out.read_text(encoding="utf-8").splitlines()]
    assert [r["messages"][0]["content"] for r in rows] == [
        "What is a lease agreement?", "What is a mortgage?", "What does a mortgage lender check?"]
    first = rows[0]["provenance"]
    assert first["seed"] == "lease" and first["question_index"] == 0 and first["generator"].startswith("scripted at")
    assert first["passages"][0]["source"] == "lease.txt#0" and first["passages"][0]["score"] > 0
    assert first["settings"]["retriever"] == "e5" and first["settings"]["top_k"] == 2
    # Each answer request carried its question's top passages, numbered.
    asked = [b["messages"][-1]["content"] for _, _, b in seen if "Question: What is a mortgage?" in
             b["messages"][-1]["content"]]
    assert len(asked) == 1 and "[1] A mortgage is a loan secured by a house" in asked[0]
    res = tunesmith("inspect", str(out))
    assert res.returncode == 0 and "3 usable conversations" in res.stdout and "0 rows skipped" in res.stdout


def test_a_killed_run_resumes_without_duplicates_or_gaps(serve, inputs, tmp_path: Path):
    from tunesmith import synth

    seeds, docs = inputs
    slow, _ = serve(scripted(delay=0.4))
    out = tmp_path / "killed.jsonl"
    args = [sys.executable, "-m", "tunesmith", "synth", "--seeds", str(seeds), "--docs", str(docs), "--out", str(out),
            "--generator", slow, "--api-model", "scripted", "--per-seed", "5", "--lang", "en", "--top-k", "2"]
    proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 120
    while time.time() < deadline and not (out.is_file() and out.read_text(encoding="utf-8").count("\n") >= 1):
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    partial = out.read_text(encoding="utf-8").count("\n")
    assert 1 <= partial < 3  # killed in the middle
    fast, seen = serve(scripted())
    res = tunesmith(*args[3:-10], "--generator", fast, "--api-model", "scripted", "--per-seed", "5", "--lang", "en",
                    "--top-k", "2")
    assert res.returncode == 0, res.stderr
    # The resumed run asked only for what was missing: the first seed word's questions were in the progress file.
    topics = [b["messages"][-1]["content"].split("\n", 1)[0] for _, _, b in seen
              if b["messages"][-1]["content"].startswith("Topic: ")]
    assert "Topic: lease" not in topics and len(topics) == len(set(topics))
    again = tmp_path / "whole.jsonl"
    whole = synth.synthesize(_cfg(seeds, docs, again, fast), say=lambda _: None)
    resumed_rows = [json.loads(x)["messages"] for x in out.read_text(encoding="utf-8").splitlines()]
    assert resumed_rows == [json.loads(x)["messages"] for x in again.read_text(encoding="utf-8").splitlines()]
    assert f"3 rows written ({partial} from an earlier run), 12 removed" in res.stdout
    assert whole.written == 3
    # Other settings on the same file are refused, naming what changed.
    res = tunesmith(*args[3:-10], "--generator", fast, "--api-model", "scripted", "--per-seed", "3", "--lang", "en",
                    "--top-k", "2")
    assert res.returncode == 2 and "per_seed" in res.stderr and "Traceback" not in res.stderr


def test_bad_synth_input_exits_2_with_where_and_how(tmp_path: Path):
    seeds = tmp_path / "empty.txt"
    seeds.write_text("\n# nothing\n", encoding="utf-8")
    res = tunesmith("synth", "--seeds", str(seeds), "--out", str(tmp_path / "o.jsonl"))
    assert res.returncode == 2 and "has no seed words" in res.stderr and "one seed word" in res.stderr
    seeds.write_text("lease\n", encoding="utf-8")
    res = tunesmith("synth", "--seeds", str(seeds), "--out", str(tmp_path / "o.jsonl"), "--per-seed", "0")
    assert res.returncode == 2 and "--per-seed" in res.stderr
    prompts = tmp_path / "prompts.json"
    prompts.write_text(json.dumps({"answer_user": "no placeholders"}), encoding="utf-8")
    res = tunesmith("synth", "--seeds", str(seeds), "--out", str(tmp_path / "o.jsonl"), "--prompts", str(prompts),
                    "--dry-run")
    assert res.returncode == 2 and "{question}" in res.stderr and "{passages}" in res.stderr


def test_docs_errors_name_the_file_and_line_and_long_paragraphs_are_cut_to_fit(tmp_path: Path):
    from tunesmith.synth.retrieve import chunk_documents

    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "rows.jsonl").write_text('{"text": "fine"}\n\n{"text": broken\n', encoding="utf-8")
    seeds = tmp_path / "seeds.txt"
    seeds.write_text("lease\n", encoding="utf-8")
    res = tunesmith("synth", "--seeds", str(seeds), "--docs", str(docs), "--out", str(tmp_path / "o.jsonl"),
                    "--retriever", "bm25", "--dry-run")
    fails(res, f"{docs / 'rows.jsonl'}:3: line 3 is not JSON", "one JSON object")
    (docs / "rows.jsonl").unlink()
    sentence = "전세 계약을 할 때에는 등기부등본을 먼저 확인해야 합니다. "
    paragraph = sentence * (58_500 // len(sentence) + 1)  # no blank line: was one passage past the context
    (docs / "law.txt").write_text(paragraph + "\n\nA short second paragraph.\n", encoding="utf-8")
    (docs / "long.jsonl").write_text(json.dumps({"text": paragraph}, ensure_ascii=False) + "\n", encoding="utf-8")
    chunks = chunk_documents(docs, 600)
    assert max(len(t) for _, t in chunks.passages) <= 600 and len(chunks.passages) > 2 * len(paragraph) // 600
    for name in ("law.txt", "long.jsonl"):  # every character kept, in order, cut at sentence ends
        texts = [t for source, t in chunks.passages if source.startswith(name)]
        assert " ".join(" ".join(texts).split()).startswith(" ".join(paragraph.split()))
        assert all(t.endswith("니다.") for t in texts[:-2])


def test_dry_run_prints_the_first_seed_words_prompts_with_its_passages(inputs):
    seeds, docs = inputs
    res = tunesmith("synth", "--seeds", str(seeds), "--docs", str(docs), "--out", "never.jsonl", "--dry-run")
    assert res.returncode == 0, res.stderr
    assert "Topic: lease" in res.stdout and "Question: lease" in res.stdout and "[1] A lease agreement" in res.stdout
    assert "retrieved lease.txt#0" in res.stdout and not Path("never.jsonl").exists()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.slow
def test_the_whole_pipeline_against_tunesmith_serve_makes_a_file_that_trains(smol_dir: Path, inputs,
                                                                             tiny_model_dir: Path, tmp_path: Path):
    """SmolLM2 served by `tunesmith serve` writes the questions and answers over real HTTP; the file passes
    inspect with nothing skipped and trains (a tiny model, a few steps)."""
    seeds, docs = inputs
    port = _free_port()
    server = subprocess.Popen([sys.executable, "-m", "tunesmith", "serve", str(smol_dir), "--port", str(port)],
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env={**os.environ})
    try:
        url = f"http://127.0.0.1:{port}/v1"
        for _ in range(600):
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                time.sleep(0.2)
        out = tmp_path / "synth.jsonl"
        res = tunesmith("synth", "--seeds", str(seeds), "--docs", str(docs), "--out", str(out), "--generator", url,
                        "--per-seed", "5", "--limit-seeds", "2", "--lang", "en", "--set", "max_new_tokens=128",
                        "--set", "min_support=0.2")
        assert res.returncode == 0, res.stderr
        assert "seed words: 6 read, 2 used" in res.stdout and "questions: 10 generated" in res.stdout
        rows = [json.loads(x) for x in out.read_text(encoding="utf-8").splitlines()]
        assert rows, res.stdout  # SmolLM2 answers English questions from English passages
        assert all(f" at http://127.0.0.1:{port}/v1" in r["provenance"]["generator"] for r in rows)
    finally:
        server.terminate()
        server.wait(timeout=30)
    res = tunesmith("inspect", str(out))
    assert res.returncode == 0 and f"{len(rows)} usable conversations" in res.stdout and "0 rows skipped" in res.stdout
    res = tunesmith("train", "--data", str(out), "--model", str(tiny_model_dir), "--name", "synth",
                    "--output-dir", str(tmp_path / "runs"), "--set", "train.max_steps=2", "--set", "data.min_eval=1",
                    "--set", "eval.max_rows=1", "--set", "eval.max_new_tokens=4", "--set", "eval.retention=off")
    assert res.returncode == 0, res.stderr[-2000:]
    assert (tmp_path / "runs" / "synth" / "report.html").is_file()


def test_a_local_generator_goes_through_the_chat_render_path(tiny_model_dir: Path, inputs, tmp_path: Path):
    """--generator MODEL: the model is loaded in this process; every decision is counted (a random tiny model
    writes nonsense, so the filters remove most of it: what matters is that nothing goes uncounted)."""
    from tunesmith import synth
    from tunesmith.config import SynthConfig

    seeds, docs = inputs
    out = tmp_path / "local.jsonl"
    cfg = SynthConfig(seeds=seeds, docs=docs, out=out, generator=str(tiny_model_dir), per_seed=2, limit_seeds=1,
                      max_new_tokens=16, min_support=0.0, min_chars=1)
    summary = synth.synthesize(cfg, say=lambda _: None)
    assert summary.seeds_used == 1 and summary.questions >= 1
    assert summary.written + sum(summary.removed.values()) == summary.questions
    lines = out.read_text(encoding="utf-8").splitlines() if out.is_file() else []
    assert len(lines) == summary.written
    assert all(json.loads(x)["provenance"]["generator"] == str(tiny_model_dir) for x in lines)


def test_a_generator_that_writes_nothing_usable_stops_early_and_never_says_wrote(serve, inputs, tmp_path: Path):
    def chatty(body: dict, headers: dict) -> tuple[int, object]:
        return 200, {"choices": [{"message": {"role": "assistant", "content": "Sure! Here you go."},
                                  "finish_reason": "stop"}]}

    url, seen = serve(chatty)
    seeds, docs = inputs
    out = tmp_path / "nothing.jsonl"
    res = tunesmith("synth", "--seeds", str(seeds), "--docs", str(docs), "--out", str(out), "--generator", url,
                    "--api-model", "m", "--lang", "en")
    fails(res, "wrote no usable row for the first seed word 'lease'", "--generator")
    assert "wrote " + str(out) not in res.stdout + res.stderr and not out.exists()
    assert len(seen) == 2  # the first seed word's question request and its one retry, then it stopped
    one = tmp_path / "one.txt"
    one.write_text("lease\n", encoding="utf-8")
    res = tunesmith("synth", "--seeds", str(one), "--out", str(tmp_path / "one.jsonl"), "--generator", url,
                    "--api-model", "m")
    fails(res, "no row passed the filters, so nothing was written")
    assert "wrote " not in res.stdout
