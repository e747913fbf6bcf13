"""The plan's memory estimate against measured peak RSS, on three shapes of data, with the default model.

Run: .venv/bin/python bench/memory_estimate.py [--steps 3] [--shapes chat,long_prompt_ko,multi_turn]
Each shape trains SmolLM2-135M (`model: default`, LoRA, the shipped precision and tcmalloc as `train` runs it)
for a few steps in a child process of its own, so each peak RSS (ru_maxrss) belongs to one run. The rows are
the bundled sample data (short chat) or generated here (no real corpora): long Korean paragraphs with a
one-line question as the answer, and long English conversations of 6-10 turns. Batch sizes and lengths keep
each run under ~12 GiB. Prints one line per shape and a JSON summary; docs/memory.md records the figures.
"""

from __future__ import annotations

import argparse
import json
import random
import resource
import subprocess
import sys
import tempfile
from pathlib import Path

SAMPLE = Path(__file__).resolve().parents[1] / "src" / "tunesmith" / "sample_data"
# shape -> (rows, batch_size, template.max_length, gradient checkpointing); the last one checks the checkpointed
# estimate, which the first three (the calibration) do not exercise.
SHAPES = {"chat": (None, 8, 384, False), "long_prompt_ko": (48, 4, 1024, False), "multi_turn": (48, 6, 512, False),
          "long_prompt_ko_checkpointed": (48, 4, 1024, True)}

KO_SENTENCES = [
    "도시의 오래된 골목에는 작은 가게들이 줄지어 있고, 사람들은 저녁마다 그곳에서 장을 본다.",
    "최근 몇 년 사이 이 지역의 인구는 꾸준히 줄어들었으며, 젊은 세대는 일자리를 찾아 대도시로 떠났다.",
    "지방 정부는 이를 막기 위해 청년 창업 지원금과 주거 보조 정책을 함께 내놓았다.",
    "전문가들은 이러한 정책이 단기적인 효과는 있겠지만 근본적인 해결책은 아니라고 지적한다.",
    "한편 마을 주민들은 오래된 건물을 고쳐 문화 공간으로 바꾸는 일에 적극적으로 나섰다.",
    "그 결과 주말이면 외지에서 찾아오는 방문객이 눈에 띄게 늘어났고 상인들의 매출도 조금씩 회복되었다.",
    "하지만 임대료가 오르면서 원래 그곳에 살던 사람들이 밀려나는 문제가 새로 생겨났다.",
    "이 현상은 흔히 젠트리피케이션이라고 불리며, 여러 나라의 도시에서 비슷한 모습으로 나타난다.",
    "연구자들은 주민 협의체를 만들어 개발 속도를 조절하는 방안이 효과적이라고 보고했다.",
    "기후 변화로 여름철 폭우가 잦아지자 하천 주변의 저지대 주택가는 해마다 침수 피해를 입었다.",
    "시는 빗물을 잠시 저장할 수 있는 지하 저류조를 짓고 도로의 배수 능력을 높이는 공사를 시작했다.",
    "학교에서는 학생들이 직접 동네의 역사를 조사해 기록하는 수업이 새로 마련되었다.",
    "아이들은 어르신들을 찾아가 옛날 이야기를 듣고 사진과 함께 작은 책으로 엮었다.",
    "이 책은 지역 도서관에 전시되었고, 많은 주민들이 자신의 젊은 시절을 떠올리며 감동을 받았다.",
    "농촌에서는 고령화로 일손이 부족해지자 드론과 자동화 장비를 도입하는 농가가 늘고 있다.",
    "그러나 장비 가격이 비싸고 사용법을 익히기 어려워 작은 농가에는 여전히 부담이 크다.",
]
KO_QUESTIONS = ["이 글에서 인구가 줄어든 주된 이유는 무엇인가요?", "주민들이 문화 공간을 만든 뒤 어떤 변화가 있었나요?",
                "글쓴이가 지적한 정책의 한계는 무엇인가요?", "침수 피해를 줄이기 위해 시는 어떤 공사를 했나요?",
                "학생들이 만든 책은 주민들에게 어떤 의미가 있었나요?", "작은 농가가 자동화 장비를 쓰기 어려운 까닭은 무엇인가요?"]
EN_WORDS = ("work sleep family friend plan week money worry call message weekend project deadline morning "
            "evening promise trust change habit walk dinner school doctor garden city train rain").split()


def korean_rows(n: int, rng: random.Random) -> list[dict]:
    """Alpaca rows: a Korean paragraph of 400-3,000 characters as input, a one-line question as the answer."""
    rows = []
    for _ in range(n):
        target, text = rng.randint(400, 3000), ""
        while len(text) < target:
            text += rng.choice(KO_SENTENCES) + " "
        rows.append({"instruction": "다음 문단을 읽고 내용에 대한 질문을 하나 만드세요.", "input": text.strip(),
                     "output": rng.choice(KO_QUESTIONS)})
    return rows


def multi_turn_rows(n: int, rng: random.Random) -> list[dict]:
    """messages rows of 6-10 turns (user/assistant alternating), each turn two to four generated sentences."""
    def turn() -> str:
        return " ".join(f"My {rng.choice(EN_WORDS)} and the {rng.choice(EN_WORDS)} keep getting in the way of "
                        f"my {rng.choice(EN_WORDS)}, and I do not know what to do about the {rng.choice(EN_WORDS)}."
                        for _ in range(rng.randint(2, 4)))

    return [{"messages": [{"role": "user" if i % 2 == 0 else "assistant", "content": turn()}
                          for i in range(2 * rng.randint(3, 5))]} for _ in range(n)]


def data_file(shape: str, rows: int | None, folder: Path) -> Path:
    shape = shape.removesuffix("_checkpointed")
    if shape == "chat":
        return SAMPLE / "counsel_en.jsonl"
    rng = random.Random(0)
    path = folder / f"{shape}.jsonl"
    made = korean_rows(rows or 0, rng) if shape == "long_prompt_ko" else multi_turn_rows(rows or 0, rng)
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in made), encoding="utf-8")
    return path


def child(shape: str, steps: int, folder: Path) -> dict:
    """Train one shape in this process; returns the plan's estimate and this process's peak RSS."""
    from tunesmith import models, pipeline, plan, train
    from tunesmith.config import parse
    from tunesmith.data.prepare import prepare
    from tunesmith.rundir import create

    rows, batch, max_length, checkpointing = SHAPES[shape]
    cfg = parse({"name": shape, "model": "default", "output_dir": str(folder / "runs"),
                 "data": {"train": [str(data_file(shape, rows, folder))]},
                 "template": {"max_length": max_length, "overflow": "truncate"},
                 "train": {"max_steps": steps, "batch_size": batch, "gradient_checkpointing": checkpointing,
                           "logging_steps": 1, "eval_strategy": "steps",
                           "eval_steps": 100000, "early_stopping_patience": 0, "load_best": False,
                           "report_to": []}}, source=f"<bench {shape}>")
    model, tok = models.load(cfg.model)
    _, train_ex, eval_ex = pipeline.render(tok, prepare(cfg.data), cfg, say=lambda _: None)
    trainable, total, arch = plan.parameter_counts(cfg)
    longest = max(len(e.input_ids) for e in train_ex)
    estimate = plan.estimate_memory_gib(cfg, trainable, total, arch, longest)
    run, _ = create(folder / "runs", shape, overwrite=True, config_yaml=cfg.to_yaml())
    train.train(model, tok, train_ex, eval_ex[:2], cfg, run, say=lambda _: None)  # 2 eval rows: eval is not measured
    run.unlock()
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 / 2**30  # Linux reports KiB
    return {"shape": shape, "rows": len(train_ex), "batch_size": batch, "longest": longest,
            "tokens_per_step": batch * longest, "estimate_gib": round(estimate, 2), "measured_gib": round(peak, 2),
            "error": round(estimate / peak - 1, 3)}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--steps", type=int, default=3)
    ap.add_argument("--shapes", default=",".join(SHAPES))
    ap.add_argument("--child", help=argparse.SUPPRESS)
    ap.add_argument("--folder", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        print(json.dumps(child(args.child, args.steps, Path(args.folder))))
        return
    from tunesmith import runtime

    results = []
    with tempfile.TemporaryDirectory() as tmp:
        for shape in args.shapes.split(","):
            # One child per shape: ru_maxrss is a high-water mark for the whole process, never reset.
            out = subprocess.run([sys.executable, __file__, "--child", shape, "--steps", str(args.steps),
                                  "--folder", tmp], capture_output=True, text=True, env=runtime.tcmalloc_env())
            if out.returncode:
                sys.exit(f"{shape} failed:\n{out.stderr[-3000:]}")
            results.append(json.loads(out.stdout.strip().splitlines()[-1]))
            r = results[-1]
            print(f"{shape:15s} batch {r['batch_size']} x {r['longest']:5d} tokens: estimate {r['estimate_gib']:5.1f} "
                  f"GiB, measured {r['measured_gib']:5.1f} GiB, error {r['error']:+.0%}", file=sys.stderr)
    print(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
