"""The rewards train.objective grpo scores written answers with: TRL's GRPOTrainer calls each on a batch of answers,
with each row's own answer (its `reference`, as eval's template.prompt_text gives it) beside them. Each compares as
eval's metrics do (the answer after its thinking, calls in any template's form), so that what training moves
toward is what the report measures. A reward that does not apply to a row (no number in its answer) is None there,
which TRL leaves out of that row's sum.

A user's own reward (grpo.rewards FILE.py:FUNCTION, as TRL's reward_funcs are written) is checked without running it
where the plan is made (the file defines the function: `defined`), imported only where the user asked for it
(`tunesmith train --trust-code`: `functions`), and called through `_checked`: what it returns is checked (a number
or None per answer) and what it raises names the file's line, as a TunesmithError.
"""

from __future__ import annotations

import ast
import functools
import importlib.util
import math
import re
import traceback
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from tunesmith import thinking, toolcalls
from tunesmith.config import OWN_REWARD, REWARDS, GrpoConfig
from tunesmith.errors import TunesmithError, did_you_mean
from tunesmith.records import Conversation

_NUMBER = re.compile(r"-?\d+(?:[.,]\d+)*")


def answer(completions: Sequence[str], reference: Sequence[str], **_: Any) -> list[float]:
    """chrF of the answer (after its thinking) against the row's answer, 0-1: eval's main metric, row by row."""
    from sacrebleu.metrics import CHRF

    chrf = CHRF()
    return [chrf.sentence_score(thinking.answer_only(c), [thinking.answer_only(r)]).score / 100
            for c, r in zip(completions, reference, strict=True)]


def _last_number(text: str) -> str | None:
    found = _NUMBER.findall(thinking.answer_only(text))
    return found[-1].replace(",", "") if found else None


def number(completions: Sequence[str], reference: Sequence[str], **_: Any) -> list[float | None]:
    """1 where the answer's last number is the row's answer's last number (a sum, a count, a date's year), 0 where
    not; None on rows whose answer has no number."""
    out: list[float | None] = []
    for c, r in zip(completions, reference, strict=True):
        want = _last_number(r)
        out.append(None if want is None else float(_last_number(c) == want))
    return out


def thinks(completions: Sequence[str], reference: Sequence[str], **_: Any) -> list[float]:
    """1 where the answer thinks before answering exactly where the row's does, and its thinking ends (an answer
    cut inside its thinking has none); eval's 'thinks before answering when due' and 'thinking ended'."""
    out = []
    for c, r in zip(completions, reference, strict=True):
        made = thinking.split(c)
        wanted = bool(thinking.split(r).reasoning)
        out.append(float(bool(made.reasoning) == wanted and made.finished))
    return out


def calls(completions: Sequence[str], reference: Sequence[str], **_: Any) -> list[float]:
    """1 where the answer makes the row's function calls (names and arguments, any order; none where it makes
    none): eval's 'function calls right' and 'calls a function when due' in one."""
    return [float(sorted(toolcalls.calls_in(thinking.answer_only(c))) == sorted(toolcalls.calls_in(
        thinking.answer_only(r)))) for c, r in zip(completions, reference, strict=True)]


FUNCTIONS: dict[str, Callable[..., list[Any]]] = {"answer": answer, "number": number, "thinks": thinks,
                                                   "calls": calls}
assert tuple(FUNCTIONS) == REWARDS, "config.REWARDS names these functions"


def chosen(cfg: GrpoConfig, convs: Sequence[Conversation]) -> list[str]:
    """The rewards a run trains with: grpo.rewards as set, or for auto the answer's, and the thinking's and the
    calls' where any row thinks or calls a function."""
    if cfg.rewards != "auto":
        return list(dict.fromkeys(cfg.rewards))
    return ["answer", *(["thinks"] if any(m.reasoning for c in convs for m in c.messages) else []),
            *(["calls"] if any(c.calls_tools for c in convs) else [])]


def label(name: str) -> str:
    """How a reward is named in the plan and the logs: a built-in by its name, one of yours as FILE.py:FUNCTION
    without the file's folder."""
    own = OWN_REWARD.fullmatch(name)
    return f"{Path(own['file']).name}:{own['function']}" if own else name


def defined(name: str) -> None:
    """Nothing for a built-in; for FILE.py:FUNCTION, a TunesmithError unless the file is there, parses as Python and
    defines FUNCTION at its top level: read, not run (the plan runs no code of yours)."""
    own = OWN_REWARD.fullmatch(name)
    if name in FUNCTIONS or own is None:
        return
    path, function = Path(own["file"]), own["function"]
    where = f"grpo.rewards: {name}"
    try:
        tree = ast.parse(path.read_bytes(), filename=str(path))
    except OSError as err:
        raise TunesmithError(f"cannot read the reward's file: {err.strerror or err}", where=where,
                             fix="name the .py file relative to the config's folder (or absolute)") from None
    except (SyntaxError, ValueError) as err:
        raise TunesmithError(f"the reward's file is not Python: {err}", where=where, fix="fix the file") from None
    tops = [n.name for n in tree.body if isinstance(n, ast.FunctionDef | ast.AsyncFunctionDef)]
    if function not in tops:
        raise TunesmithError(f"{path.name} defines no function {function} at its top level"
                             + did_you_mean(function, tops), where=where,
                             fix=f"its functions: {', '.join(tops) or 'none'}")


def functions(names: Sequence[str], trusted: bool) -> list[Callable[..., list[Any]]]:
    """The reward functions TRL calls, in `names`' order; yours imported from their files only when `trusted`."""
    own = [n for n in names if n not in FUNCTIONS]
    if own and not trusted:
        raise TunesmithError(f"grpo.rewards names your own code ({', '.join(map(label, own))}): tunesmith runs "
                             "it only when asked", where="grpo.rewards",
                             fix="run it as `tunesmith train CONFIG --trust-code` if you trust the file")
    out = []
    for name in names:
        defined(name)
        out.append(FUNCTIONS[name] if name in FUNCTIONS else _checked(_imported(name), name))
    return out


def _imported(name: str) -> Callable[..., Any]:
    own = OWN_REWARD.fullmatch(name)
    assert own is not None
    return getattr(_module(Path(own["file"]), label(name)), own["function"])


_MODULES: dict[Path, Any] = {}  # a file of several rewards runs once


def _module(path: Path, where: str) -> Any:
    if path not in _MODULES:
        spec = importlib.util.spec_from_file_location(f"tunesmith_reward_{path.stem}", path)
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        try:
            spec.loader.exec_module(module)
        except Exception as err:
            raise TunesmithError(f"importing {path.name} raised {type(err).__name__}: {err}{_line_in(err, path)}",
                                 where=f"grpo.rewards: {where}", fix="fix the file (--debug shows the traceback)"
                                 ) from err
        _MODULES[path] = module
    return _MODULES[path]


def _line_in(err: BaseException, path: Path) -> str:
    frames = [f for f in traceback.extract_tb(err.__traceback__) if Path(f.filename) == path]
    return f" (at {path.name} line {frames[-1].lineno}: {frames[-1].line})" if frames else ""


def _checked(func: Callable[..., Any], name: str) -> Callable[..., list[Any]]:
    """`func` as TRL calls it, its rewards checked: one number (or None where it does not apply) per answer."""
    path, where = Path(OWN_REWARD.fullmatch(name)["file"]), f"grpo.rewards: {label(name)}"

    @functools.wraps(func)
    def call(*, prompts: Sequence[Any], completions: Sequence[Any], **kwargs: Any) -> list[Any]:
        try:
            got = func(prompts=prompts, completions=completions, **kwargs)
        except Exception as err:
            raise TunesmithError(f"raised {type(err).__name__}: {err}{_line_in(err, path)}", where=where,
                                 fix="completions and prompts are strings (the prompt as the template rendered "
                                     "it); reference and answer are each row's answer (with / without its "
                                     "thinking); --debug shows the traceback") from err
        return _scores(got, len(completions), where)

    call.__name__ = label(name)  # TRL logs rewards/<name>/mean
    return call


def _scores(got: Any, want: int, where: str) -> list[float | None]:
    fix = "return a list with one float (or None where the reward does not apply) per completion"
    if isinstance(got, str | bytes | dict) or not (hasattr(got, "__len__") and hasattr(got, "__iter__")):
        raise TunesmithError(f"returned {type(got).__name__}, not a list", where=where, fix=fix)
    if len(got) != want:
        raise TunesmithError(f"returned {len(got)} rewards for {want} completions", where=where, fix=fix)
    out: list[float | None] = []
    for i, value in enumerate(got):
        try:
            number = None if value is None else float(value)
        except (TypeError, ValueError):
            raise TunesmithError(f"reward {i} is {value!r}, not a number", where=where, fix=fix) from None
        if number is not None and math.isinf(number):
            raise TunesmithError(f"reward {i} is {number}", where=where, fix=fix + ", finite")
        out.append(number)
    return out
