"""The Data tab's work: `tunesmith inspect` and `tunesmith preview` on a file under the runs folder."""

from __future__ import annotations

import html
from pathlib import Path

from tunesmith.config import DataConfig, TemplateConfig
from tunesmith.errors import TunesmithError
from tunesmith.ui import files


def parse_roles(text: str) -> dict[str, str]:
    """'therapist=assistant, client=user' -> {'therapist': 'assistant', 'client': 'user'}.

    >>> parse_roles("therapist=assistant, client = user")
    {'therapist': 'assistant', 'client': 'user'}
    """
    out = {}
    for part in filter(None, (p.strip() for p in text.replace("\n", ",").split(","))):
        name, sep, role = part.partition("=")
        if not sep or not name.strip() or not role.strip():
            raise TunesmithError(f"role mapping {part!r} is not NAME=ROLE", where="ui",
                                 fix="write it as therapist=assistant")
        out[name.strip()] = role.strip()
    return out


def inspect_file(root: Path, name: str, roles_text: str) -> tuple[str, str, str]:
    """(inspect's text, a suggested role mapping or '', the file's path under root) for a file the UI may read."""
    from tunesmith.data.summary import render, summarize

    path = files.inside(root, name)
    try:
        summary = summarize([path], DataConfig(train=[path], roles=parse_roles(roles_text)))
    except TunesmithError as err:
        roles = (err.suggest or {}).get("roles")
        return err.render(), ", ".join(f"{k}={v}" for k, v in roles.items()) if roles else "", str(path)
    return render(summary), "", str(path)


def preview_html(root: Path, name: str, roles_text: str, model: str, n: int = 3) -> str:
    """The first `n` rows rendered with `model`'s template: supervised runs highlighted, the checks below."""
    from tunesmith import preview as pv

    path = files.inside(root, name)
    try:
        spec = files.model_spec(root, model)  # never a folder outside the runs folder
        p = pv.preview([path], DataConfig(train=[path], roles=parse_roles(roles_text)), TemplateConfig(), spec, n)
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
