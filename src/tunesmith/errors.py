"""The one user-facing error type.

Every problem a user can fix (a missing file, an unknown config key, a row the template cannot train on)
is raised as `TunesmithError`. The CLI prints it without a traceback and exits with code 2; anything else
is a bug in tunesmith and keeps its traceback.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable
from typing import Any

EXIT_USER_ERROR = 2


class TunesmithError(Exception):
    """A problem the user can fix: says where, what was found, what was expected and how to fix it.

    >>> print(TunesmithError("data file not found", where="demo.yaml: data.train[0]", fix="check the path"))
    demo.yaml: data.train[0]: data file not found
    how to fix: check the path
    """

    def __init__(self, what: str, *, where: str | None = None, fix: str | None = None,
                 problems: Iterable[str] = (), suggest: dict[str, Any] | None = None) -> None:
        self.what = what
        self.where = where
        self.fix = fix
        self.problems = list(problems)
        self.suggest = suggest  # the fix as settings, where it is one (data roles): the UI applies it in a click
        super().__init__(self.render())

    def render(self) -> str:
        head = f"{self.where}: {self.what}" if self.where else self.what
        lines = [head, *(f"  - {p}" for p in self.problems)]
        if self.fix:
            lines.append(f"how to fix: {self.fix}")
        return "\n".join(lines)


def did_you_mean(word: str, choices: Iterable[str]) -> str:
    """' (did you mean "x"?)' for the closest choice, or '' when nothing is close.

    >>> did_you_mean("epoch", ["epochs", "seed"])
    ' (did you mean "epochs"?)'
    """
    close = difflib.get_close_matches(word, list(choices), n=1, cutoff=0.6)
    return f' (did you mean "{close[0]}"?)' if close else ""
