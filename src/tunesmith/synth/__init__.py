"""`tunesmith synth`: build an instruction data set from seed words, grounded in your documents.

    seed words (seeds.py) -> questions per word (generator.py: a local model or an OpenAI-compatible url)
    -> passages per question (retrieve.py: multilingual E5, BM25 or both, over --docs)
    -> an answer grounded in them (prompts.py: shipped Korean/English templates, overridable)
    -> removals counted by reason (filters.py) -> rows with provenance appended to --out (run.py, resumable)

The output is a `messages` (or alpaca) JSONL file that `tunesmith inspect` and `tunesmith train` read as is.
"""

from tunesmith.synth.run import dry_run, synthesize

__all__ = ["dry_run", "synthesize"]
