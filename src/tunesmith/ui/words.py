"""Every label of the UI in English and Korean: key -> (English, Korean), one row per label, so a label cannot
lack a language (a test checks each row has both)."""

from __future__ import annotations

from typing import Any

TEXT = {
    "data": ("Data", "데이터"),
    "train": ("Train", "학습"),
    "runs": ("Runs", "실행 기록"),
    "chat": ("Chat", "대화"),
    "export": ("Export", "내보내기"),
    "upload": ("Upload a data file (JSON, JSONL, CSV, XLSX, Parquet, TXT)",
               "데이터 파일 올리기 (JSON, JSONL, CSV, XLSX, Parquet, TXT)"),
    "pick": ("or pick a file under the runs folder", "또는 runs 폴더 안의 파일 고르기"),
    "roles": ("Role mapping (NAME=ROLE, comma-separated)", "역할 매핑 (이름=역할, 쉼표로 구분)"),
    "inspect": ("Inspect", "검사"),
    "fields": ("Field mapping (FIELD=YOUR_FIELD, comma-separated)", "필드 매핑 (필드=내 필드, 쉼표로 구분)"),
    "apply": ("Apply the suggested mapping", "제안된 매핑 적용"),
    "model": ("Model for the preview", "미리보기 모델"),
    "summary": ("What tunesmith read", "tunesmith가 읽은 내용"),
    "preview": ("Rows as training sees them (supervised tokens highlighted)", "학습에 들어가는 모습 (학습 대상 토큰 강조)"),
    "refresh": ("Refresh", "새로 고침"),
    "report": ("Report", "보고서"),
    "run": ("Run folder", "실행 폴더"),
    "columns": ("run|state|chrF base → tuned|retention", "실행|상태|chrF 기본 → 튜닝|기억 유지"),
    "compare_with": ("Compare with another run", "다른 실행과 비교"),
    "side_columns": ("|first run|second run", "|첫 번째 실행|두 번째 실행"),
    "train_data": ("Training data: the file picked in the Data tab, with its role and field mappings",
                   "학습 데이터: 데이터 탭에서 고른 파일과 역할·필드 매핑"),
    "run_name": ("Run name (the folder under the runs folder)", "실행 이름 (runs 폴더 안의 폴더)"),
    "advanced": ("Advanced settings", "고급 설정"),
    "overwrite": ("Replace a finished run of the same name", "같은 이름의 끝난 실행을 덮어쓰기"),
    "export_overwrite": ("Replace an earlier export of this run in this format", "이 실행의 같은 형식 내보내기를 덮어쓰기"),
    "plan": ("Plan (nothing starts)", "계획 보기 (아직 시작하지 않음)"),
    "plan_out": ("The plan: steps, trainable parameters, memory and time, template checks, warnings",
                 "계획: 스텝, 학습 파라미터, 메모리와 시간, 템플릿 검사, 경고"),
    "command": ("The same from a terminal", "터미널에서 같은 작업"),
    "yaml": ("The same as a config file", "같은 설정 파일"),
    "start": ("Start training", "학습 시작"),
    "stop": ("Stop (a checkpoint is kept)", "멈춤 (체크포인트 보존)"),
    "resume": ("Resume", "이어서 학습"),
    "status": ("Status", "상태"),
    "losses": ("Loss (train and eval)", "손실 (학습, 평가)"),
    "log": ("Output of tunesmith train", "tunesmith train 출력"),
    "finished_run": ("Run (finished)", "실행 (완료된 것)"),
    "system": ("System prompt (empty: the one every training row had)", "시스템 프롬프트 (비우면 학습 데이터의 것)"),
    "base_model": ("Base model", "기본 모델"),
    "tuned_model": ("Tuned model", "튜닝된 모델"),
    "temperature": ("Temperature (0 = greedy, the same answer every time)", "온도 (0 = 항상 같은 답)"),
    "max_new": ("Longest answer (tokens)", "최대 답변 길이 (토큰)"),
    "message": ("Your message", "메시지"),
    "send": ("Send to both", "둘 다에게 보내기"),
    "clear": ("Clear", "지우기"),
    "base_better": ("Base answered better", "기본 모델이 더 나음"),
    "tuned_better": ("Tuned answered better", "튜닝된 모델이 더 나음"),
    "both_bad": ("Both are bad", "둘 다 나쁨"),
    "tuned_good": ("👍 tuned", "👍 튜닝된 모델"),
    "tuned_bad": ("👎 tuned", "👎 튜닝된 모델"),
    "my_answer": ("Your better answer (kept as the chosen one over the tuned model's)",
                  "더 나은 답 (튜닝된 모델의 답 대신 선택된 답으로 저장)"),
    "use_mine": ("Save my answer", "내 답 저장"),
    "collected": ("Preferences collected", "수집한 선호"),
    "format": ("Format", "형식"),
    "quant": ("GGUF quantisation", "GGUF 양자화"),
    "export_go": ("Export and check", "내보내고 검사하기"),
    "export_out": ("Result (the export loaded back and compared with the tuned model)",
                   "결과 (내보낸 모델을 다시 읽어 튜닝된 모델과 비교)"),
}
LANGS = ("en", "ko")


def i18n() -> Any:
    import gradio as gr

    return gr.I18n(**{code: {key: words[i] for key, words in TEXT.items()} for i, code in enumerate(LANGS)})


def browser_language(accept_language: str | None) -> str:
    """The first of LANGS the browser asks for (its Accept-Language header), else English.

    >>> browser_language("ko-KR,ko;q=0.9,en-US;q=0.8"), browser_language("fr-FR,en;q=0.5"), browser_language(None)
    ('ko', 'en', 'en')
    """
    for part in (accept_language or "").split(","):
        code = part.split(";")[0].strip().lower().split("-")[0]
        if code in LANGS:
            return code
    return "en"


def words(key: str, lang: str) -> str:
    """One label in one language, for the places Gradio does not translate (a table's column names).

    >>> words("runs", "ko")
    '실행 기록'
    """
    return TEXT[key][LANGS.index(lang) if lang in LANGS else 0]
