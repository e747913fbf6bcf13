"""The Data tab's work: `tunesmith inspect` and `tunesmith preview` on a file under the runs folder."""

from __future__ import annotations

import html
from pathlib import Path

from tunesmith.config import DataConfig, TemplateConfig
from tunesmith.errors import TunesmithError
from tunesmith.ui import files


def parse_roles(text: str, what: str = "role mapping", example: str = "therapist=assistant") -> dict[str, str]:
    """'therapist=assistant, client=user' -> {'therapist': 'assistant', 'client': 'user'} (the Data tab's role and
    field mappings alike).

    >>> parse_roles("therapist=assistant, client = user")
    {'therapist': 'assistant', 'client': 'user'}
    """
    out = {}
    for part in filter(None, (p.strip() for p in text.replace("\n", ",").split(","))):
        name, sep, role = part.partition("=")
        if not sep or not name.strip() or not role.strip():
            raise TunesmithError(f"{what} {part!r} is not {example.split('=')[0].upper()}=...", where="ui",
                                 fix=f"write it as {example}")
        out[name.strip()] = role.strip()
    return out


def parse_columns(text: str) -> dict[str, str]:
    """'prompt=seed_word, completion=answer' -> data.columns.

    >>> parse_columns("prompt=seed_word, completion=answer")
    {'prompt': 'seed_word', 'completion': 'answer'}
    """
    return parse_roles(text, "field mapping", "prompt=question_text")


def mapped(path: Path, roles_text: str, columns_text: str) -> DataConfig:
    """The data section the Data tab's two mappings make for `path`."""
    return DataConfig(train=[path], roles=parse_roles(roles_text), columns=parse_columns(columns_text))


def inspect_file(root: Path, name: str, roles_text: str, columns_text: str = "") -> tuple[str, dict[str, str], str]:
    """(inspect's text, the mappings it suggests as the boxes' text: {"roles": ..., "columns": ...}, only those
    suggested; the file's path under root) for a file the UI may read."""
    from tunesmith.data.summary import render, summarize

    path = files.inside(root, name)
    try:
        summary = summarize([path], mapped(path, roles_text, columns_text))
    except TunesmithError as err:
        wanted = {k: v for k, v in (err.suggest or {}).items() if k in ("roles", "columns") and v}
        return err.render(), {k: ", ".join(f"{a}={b}" for a, b in v.items()) for k, v in wanted.items()}, str(path)
    return render(summary), {}, str(path)


def preview_html(root: Path, name: str, roles_text: str, model: str, n: int = 3, columns_text: str = "") -> str:
    """The first `n` rows rendered with `model`'s template: supervised runs highlighted, the checks below."""
    from tunesmith import preview as pv

    path = files.inside(root, name)
    try:
        spec = files.model_spec(root, model)  # never a folder outside the runs folder
        p = pv.preview([path], mapped(path, roles_text, columns_text), TemplateConfig(), spec, n)
    except TunesmithError as err:
        return f"<pre>{html.escape(err.render())}</pre>"
    parts = []
    for ex, runs in p.rows:
        body = "".join(f"<mark>{html.escape(t)}</mark>" if sup else html.escape(t) for t, sup in runs)
        parts.append(f"<p><b>{html.escape(ex.source)}</b> ({ex.supervised_tokens} of {len(ex.input_ids)} tokens "
                     f"supervised)</p><pre class='ts-row' style='white-space:pre-wrap'>{body}</pre>")
    c = p.checks
    parts.append(f"<p>supervised share per row: min {c.share_min:.0%}, median {c.share_median:.0%}; rows with "
                 f"nothing supervised: {len(c.zero_supervised)}; end-of-turn token missing: "
                 f"{len(c.end_of_turn_missing)}; prompt differs from inference: {len(c.parity_failures)}</p>")
    return "".join(parts)
