"""Preference pairs through the template stage (issue 30): one prompt rendered as the model's chat template, each
answer supervised with its end-of-turn token, only the last answer of a multi-turn prompt learned; golden masks on
SmolLM2's real tokenizer."""

from __future__ import annotations

from tunesmith.config import TemplateConfig
from tunesmith.data.preference import Pair
from tunesmith.pairs import render_pairs
from tunesmith.records import Message


def test_a_pair_renders_one_prompt_and_two_answers_each_ending_on_its_end_of_turn(smol_tokenizer):
    prompt = (Message("system", "Be kind."), Message("user", "I can't sleep."), Message("assistant", "Why not?"),
              Message("user", "Exams."))
    pair = Pair(prompt, "That sounds hard. What worries you most?", "Sleep more.", "p.json[0]")
    r = render_pairs(smol_tokenizer, [pair], TemplateConfig())
    assert r.skipped == () and r.checks.ok and len(r.pairs) == 1
    rp = r.pairs[0]
    decode = smol_tokenizer.decode
    want_prompt = smol_tokenizer.apply_chat_template([{"role": m.role, "content": m.content} for m in prompt],
                                                     add_generation_prompt=True, tokenize=False)
    assert decode(rp.prompt_ids) == want_prompt  # what the model sees at inference, exactly
    assert decode(rp.chosen_ids) == "That sounds hard. What worries you most?<|im_end|>\n"
    assert decode(rp.rejected_ids) == "Sleep more.<|im_end|>\n"
    # Only the last answer is supervised on each side: "Why not?" is context.
    for e in r.examples:
        supervised = decode([t for t, label in zip(e.input_ids, e.labels) if label != -100])
        assert "Why not?" not in supervised and supervised.endswith("<|im_end|>\n")


def test_a_pair_whose_side_does_not_fit_is_skipped_naming_the_side(smol_tokenizer):
    short = Pair((Message("user", "hi"),), "Hello! How can I help?", "Go away.", "a:1")
    long = Pair((Message("user", "hi"),), "word " * 400, "no", "a:2")
    r = render_pairs(smol_tokenizer, [short, long], TemplateConfig(max_length=128))
    assert [p.source for p in r.pairs] == ["a:1"]
    assert [(s.location, s.kind) for s in r.skipped] == [("a:2", "too_long")]
    assert r.skipped[0].reason.startswith("chosen side: ")


def test_preview_shows_each_pair_as_its_two_renders(tmp_path, smol_dir):
    import json

    from tests.conftest import tunesmith

    rows = [{"prompt": "I can't sleep.", "chosen": "That sounds hard. What keeps you up?", "rejected": "Sleep more."},
            {"prompt": "Hi", "chosen": "Hello!", "rejected": "Hello!"}]
    path = tmp_path / "prefs.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    res = tunesmith("preview", str(path), "--model", str(smol_dir), "-n", "1")
    assert res.returncode == 0, res.stderr
    out = res.stdout
    assert "--- prefs.jsonl:1#chosen: " in out and "--- prefs.jsonl:1#rejected: " in out
    assert "[[Sleep more.<|im_end|>\n]]" in out and "check: end-of-turn token supervised: yes, in every row" in out
    assert "prefs.jsonl:2" in out and "the same text chosen and rejected" in out  # the skipped pair is counted
