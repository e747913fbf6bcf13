"""train.objective grpo (grpotrain.py): TRL's GRPOTrainer on the SFT rows' prompts, through the whole job."""

from __future__ import annotations

from tunesmith import grpotrain, template
from tunesmith.config import TemplateConfig


def test_a_grpo_run_writes_scores_learns_and_is_evaluated_as_any_run(tmp_path, tiny_model_dir, small_jsonl):
    """The tiny model writes 2 answers to each of 2 prompts a step, scored by chrF against the counselling rows'
    answers: the rewards differ within a prompt, so the adapter gets gradients; the held-out reward is logged at
    step 0 and at each eval and picks the kept step; eval and the report follow as for SFT."""
    from tests.conftest import tiny_config
    from tunesmith import pipeline, rundir, train

    cfg = tiny_config(tiny_model_dir, small_jsonl, tmp_path / "runs", train={
        "objective": "grpo", "max_steps": 4, "batch_size": 2, "learning_rate": 5e-3, "logging_steps": 1,
        "eval_strategy": "steps", "eval_steps": 2, "report_to": []},
        grpo={"generations": 2, "max_new_tokens": 8, "rewards": ["answer"], "reward_weights": [2.0]})
    lines: list[str] = []
    run = rundir.RunDir(pipeline.run(cfg, say=lines.append).run_dir)
    step = next(line for line in lines if line.startswith("plan: each optimizer step (grpo): (1) take 2 prompts"))
    assert "(3) score each answer: answer (weighted 2; " in step
    rows = run.read_metrics()
    assert all(set(r.rewards) == {"answer"} for r in rows if r.reward is not None)  # each reward's mean apart
    steps = [r for r in rows if r.reward is not None]
    assert [r.step for r in steps] == [1, 2, 3, 4] and any(r.reward_std and r.grad_norm for r in steps)
    assert [r.step for r in rows if r.eval_reward is not None] == [0, 2, 4]
    answers = run.read_answers()  # every answer written, with its score: 2 prompts x 2 answers a step
    assert [sum(1 for a in answers if a.step == s and not a.held_out) for s in (1, 2, 3, 4)] == [4, 4, 4, 4]
    assert sorted({a.step for a in answers if a.held_out}) == [0, 2, 4] and all(
        set(a.rewards) == {"answer"} and a.prompt and 0 <= a.rewards["answer"] <= 1 for a in answers)
    summary = train.read_summary(run)
    assert summary.best_eval_reward == max(r.eval_reward for r in rows if r.eval_reward is not None and r.step)
    assert "Held-out reward" in run.report_md.read_text("utf-8")
    assert [m.label.split()[0] for m in run.evaluation().read_summary().models] == ["base", "tuned"]


def test_grpo_prompts_are_eval_s_and_are_tokenised_without_added_tokens(tiny_model_dir, small_jsonl, smol_tokenizer):
    from tunesmith.config import parse
    from tunesmith.data import formats

    from tests.conftest import tiny_raw

    cfg = parse(tiny_raw(tiny_model_dir, small_jsonl), source="<test>")
    convs = formats.load(small_jsonl).conversations
    data = grpotrain.dataset(smol_tokenizer, convs, cfg)
    fitted, _ = template.fit(smol_tokenizer, convs, TemplateConfig())
    assert data["prompt"] == [template.prompt_text(smol_tokenizer, c)[0] for c in fitted]
    assert data["reference"] == [c.messages[-1].content for c in convs]
    trainer = object.__new__(grpotrain._trainer_class())
    trainer.processing_class = smol_tokenizer
    ids, images, extra = trainer._tokenize_prompts(data["prompt"][:2])
    assert ids == [smol_tokenizer(p, add_special_tokens=False)["input_ids"] for p in data["prompt"][:2]]
    assert images is None and extra == {}


def test_your_own_reward_is_read_by_plan_refused_unasked_and_trains_with_trust_code(tmp_path, tiny_model_dir,
                                                                                     small_jsonl):
    """A reward function in a file beside the config (TRL's reward_funcs signature): plan reads it without running
    it (importing the file would leave a mark), train refuses it until --trust-code, then tries it on the first rows'
    own answers before the weights load and trains with it, logged under its name."""
    import json

    import yaml

    from tests.conftest import fails, tiny_raw, tunesmith

    (tmp_path / "my_rewards.py").write_text(
        "import pathlib\npathlib.Path(__file__).with_name('imported').touch()\n\n"
        "def short(completions, answer, **kwargs):\n"
        "    return [min(1.0, len(a) / max(1, len(c))) for c, a in zip(completions, answer)]\n", "utf-8")
    raw = tiny_raw(tiny_model_dir, small_jsonl, train={"objective": "grpo", "max_steps": 2, "batch_size": 2,
                                                        "logging_steps": 1, "report_to": []},
                   grpo={"generations": 2, "max_new_tokens": 8, "rewards": ["my_rewards.py:short"]})
    (tmp_path / "run.yaml").write_text(yaml.safe_dump(raw), "utf-8")
    planned = tunesmith("plan", "run.yaml", cwd=tmp_path)
    assert planned.returncode == 0, planned.stderr
    assert "(3) score each answer: my_rewards.py:short (summed; yours run with --trust-code;" in planned.stdout
    fails(tunesmith("train", "run.yaml", cwd=tmp_path), "runs it only when asked", "--trust-code")
    assert not (tmp_path / "imported").exists()
    done = tunesmith("train", "run.yaml", "--trust-code", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert "grpo: my_rewards.py:short gives the first 2 rows' own answers 1, 1" in done.stderr
    assert (tmp_path / "imported").exists()
    # the tiny model's 8-token answers are all shorter than the rows' own: 1 each, before and after
    assert "held-out reward (grpo) 1.0000 -> 1.0000" in done.stdout and "not above the start" in done.stdout
    rows = [json.loads(line) for line in (tmp_path / "runs" / "tiny" / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows if r.get("reward") is not None] == [1, 2]
