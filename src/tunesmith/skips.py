"""Why rows are not used: the kinds of skip, what the rows of a kind have in common, how to keep them, and the
few lines every verb prints about them (inspect, preview, plan, train).

A kind is set where the row is skipped (readers, formats, prepare, template, compare) and never parsed back
from the reason's text; the reason keeps the row's own detail ("Expecting ',' at column 12").
"""

from __future__ import annotations

from collections.abc import Sequence

from tunesmith.records import SKIP_KINDS, Skip

AUTO_STEP = 64  # template.max_length auto rounds the longest row up to a multiple of this


# kind -> how to keep those rows; {need} is filled in from the rows' lengths (a max_length that keeps them all)
SKIP_FIXES = {
    "bad_json": "each line must hold one whole JSON object: repair or delete these lines (each line's error: "
                "tunesmith inspect FILE --json)",
    "ragged": "quote the fields that contain the delimiter and give every row the header's fields (each row's "
              "count: tunesmith inspect FILE --json)",
    "no_header": "give that column a header in the sheet's first row (then name it with data.columns if it is the "
                 "prompt or the answer), or delete the stray value",
    "wrong_format": "give these rows the fields the other rows have, or name your fields with data.columns "
                    "(e.g. --set data.columns.completion=answer)",
    "pair_side_missing": "give each preference row both answers (chosen and rejected), or leave the row out",
    "pair_calls": "train function calls as instruction rows (messages with tool_calls: tunesmith train --data), or "
                  "write the pair's answers as text",
    "chosen_is_rejected": "write a rejected answer that differs from the chosen one, or leave the pair out: it "
                          "teaches nothing",
    "malformed": "give each field the type the format expects (text for content and role, a list for "
                 "messages, 0 or 1 for an assistant turn's weight, true or false for a segment's label); "
                 "tunesmith inspect FILE --json lists each row's "
                 "problem",
    "not_text": "make each turn's content a string, or a list of text parts ({{\"type\": \"text\", \"text\": ...}}); a "
                "number, null, or an image or audio part is not read as text",
    "tool_call": "write each call as {{\"name\": ..., \"arguments\": {{...}}}} (OpenAI's tool_calls, or a "
                 "function_call turn's JSON) and each tool as {{\"name\": ..., \"description\": ..., \"parameters\": "
                 "{{...}}}}",
    "empty_turn": "fill in or delete the empty turns (an empty answer has nothing to teach)",
    "control_char": "remove the control characters (often a stray NUL or form feed from a copied PDF)",
    "turn_order": "map your role names with data.roles (e.g. --set data.roles.counselor=assistant), or merge "
                  "consecutive turns of the same speaker",
    "no_answer": "end each conversation with the answer; if your file names that role differently, map it with "
                 "data.roles (e.g. --set data.roles.bot=assistant)",
    "no_prompt": "give each row a prompt (a string, or a conversation ending on a user turn)",
    "unreadable": "see each row's reason: tunesmith inspect FILE --json",
    "duplicate": "nothing to do: the first copy is used once (remove the copies to silence this)",
    "row_limit": "drop data.max_rows (--set data.max_rows=null) to train on every row",
    "too_long": "--set template.max_length={need} keeps them (or --set template.overflow=truncate: older turns "
                "and input text are cut, never the answer)",
    "answer_too_long": "--set template.max_length={need} keeps them",
    "no_supervision": "check the assistant turns are not empty nor all of weight 0 (tunesmith inspect FILE), or "
                      "--set template.supervise=all",
    "weight_unmatched": "the chat template's {{% generation %}} marks do not cover each assistant turn: use a "
                        "template that marks every turn (template.chat_template), or drop the turns' weights",
}
_MEASURED = ("too_long", "answer_too_long")  # kinds whose label names the max_length
_SAME_REASON = (*_MEASURED, "row_limit", "no_supervision")  # kinds whose rows' reasons say nothing more


def rows_text(n: int) -> str:
    return f"{n} row" if n == 1 else f"{n} rows"


def block(headline: str, skipped: Sequence[Skip], max_length: int | None = None, context: int | None = None,
          context_is: str = "the model's context") -> list[str]:
    """What every verb prints about skipped rows: `headline`, then skip_lines indented under it; nothing when no
    row was skipped.

    >>> block("not compared: 0 rows", [])
    []
    """
    if not skipped:
        return []
    return [headline, *(f"  {line}" for line in skip_lines(skipped, max_length, context, context_is=context_is))]


def skip_lines(skipped: Sequence[Skip], max_length: int | None = None, context: int | None = None, shown: int = 3,
               context_is: str = "the model's context") -> list[str]:
    """Skipped rows summarised: per kind a count, their lengths, the first few file:lines, one example reason
    and the fix to type.

    Three lines per kind whatever the file's size (a 1,000-row file printed 1,007 lines before); the full list
    is in the run folder's data/summary.json and in `--json`.
    """
    lines = []
    by_kind: dict[str, list[Skip]] = {}
    for s in skipped:
        by_kind.setdefault(s.kind, []).append(s)
    for kind, rows in sorted(by_kind.items(), key=lambda kv: -len(kv[1])):
        fix = SKIP_FIXES.get(kind, SKIP_FIXES["unreadable"])
        sizes = sorted(s.tokens for s in rows if s.tokens is not None)
        spread = (f"; {sizes[0]}-{sizes[-1]} tokens, median {sizes[len(sizes) // 2]}" if sizes else "")
        where = ", ".join(s.location for s in rows[:shown]) + (f" (+{len(rows) - shown} more)" if len(rows) > shown
                                                               else "")
        need = -(-sizes[-1] // AUTO_STEP) * AUTO_STEP if sizes else max_length
        if kind in _MEASURED and context and need and need > context:
            fix = (f"longer than {context_is} ({context} tokens): shorten them, or --set "
                   "template.overflow=truncate")
        limit = f" {max_length}" if kind in _MEASURED and max_length else ""
        lines.append(f"{rows_text(len(rows))} {SKIP_KINDS.get(kind, kind)}{limit}{spread}: {where}")
        if kind not in _SAME_REASON:  # the row's own detail: which column, which turn
            lines.append(f"  e.g. {rows[0].location}: {rows[0].reason}")
        lines.append(f"  fix: {fix.format(need=need)}")
    return lines


def skip_problems(skipped: Sequence[Skip], max_length: int | None = None) -> list[str]:
    """skip_lines as the `problems` of an error: one item per kind, its example and fix on indented lines."""
    items: list[str] = []
    for line in skip_lines(skipped, max_length):
        if line.startswith("  ") and items:
            items[-1] += "\n    " + line.strip()
        else:
            items.append(line)
    return items
