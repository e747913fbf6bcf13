"""tunesmith: instruction-tune a small LLM on your own data set and see honestly whether it helped."""

__version__ = "0.1.0"


def read_conversations(path, **options):  # noqa: ANN001, ANN201 - kept import-light for `tunesmith --help`
    """Read a file, folder or glob into validated conversations, one ReadResult per file.

    Options are the config's data keys: format, roles, columns, system, encoding.

    >>> results = read_conversations("corpus.json", roles={"therapist": "assistant"})  # doctest: +SKIP
    >>> results[0].format, len(results[0].conversations), results[0].skipped[:1]       # doctest: +SKIP
    ('flat_turns', 99, ())
    """
    from pathlib import Path

    from tunesmith.data.formats import load
    from tunesmith.data.readers import expand

    return [load(p, **options) for p in expand(Path(path))]
