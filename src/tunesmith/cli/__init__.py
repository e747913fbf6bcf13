"""The command line: a thin shell, one short function per verb, each calling one library function.

A TunesmithError prints as a clear message with exit code 2 and no traceback (unless --debug). The verbs are
registered on `app` in the order `--help` lists them: a run's (runs.py), data's (data.py), a model's (models.py).
"""

from __future__ import annotations

import os
import sys
from typing import Any

import typer
from typer._click.exceptions import ClickException
from typer.exceptions import Abort

# Each module registers its verbs on `app` when imported, in this order (the order of --help): not sorted.
from tunesmith.cli import runs  # noqa: F401, I001
from tunesmith.cli import data  # noqa: F401
from tunesmith.cli import models  # noqa: F401
from tunesmith.cli.shell import _config, _state, app, typed_fix  # noqa: F401  (_config: the board form test)
from tunesmith.errors import EXIT_USER_ERROR, TunesmithError


METAVARS = {"int": "N", "float": "NUMBER", "str": "TEXT", "Path": "PATH"}  # what --help shows after a flag


def command() -> typer.core.TyperGroup:
    """The click group of `app`, with each option's value shown as N, NUMBER, TEXT or PATH and on/off flags as
    bare flags (typer would print `<str>` and `<bool>`)."""
    group = typer.main.get_command(app)
    for verb in [group, *group.commands.values()]:
        for param in verb.params:
            if isinstance(param, typer.core.TyperArgument):  # its metavar (RUN, DATA...) says it already
                param.display_type_rich = lambda ctx: None  # type: ignore[method-assign]
            elif isinstance(param, typer.core.TyperOption) and param.metavar is None:
                kind = param.type_descriptor.annotation
                kind = (getattr(kind, "__args__", None) or (kind,))[0]  # list[Path] -> Path
                param.metavar = "" if param.is_flag else METAVARS.get(getattr(kind, "__name__", ""))
        verb.get_help_option = _bare_flag(verb.get_help_option)  # type: ignore[method-assign]
    return group


def _bare_flag(make: Any) -> Any:
    def help_option(ctx: Any) -> Any:
        option = make(ctx)
        if option is not None:
            option.metavar = ""
        return option

    return help_option


def main() -> None:
    import warnings

    # tunesmith draws its own progress (one style, with an ETA, quiet when piped): the libraries' tqdm bars
    # ("Loading weights", "Writing model shards", dataset maps) are silenced before any of them is imported.
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    os.environ.setdefault("HF_DATASETS_DISABLE_PROGRESS_BARS", "1")
    # TRL 1.16 and PEFT 0.21 still use transformers' renamed gradient-checkpointing names; not the user's to fix.
    warnings.filterwarnings("ignore", message=r".*gradient_checkpointing.*deprecated", category=FutureWarning)
    try:
        code = command()(standalone_mode=False)  # usage errors come here, printed like every other error
    except TunesmithError as err:
        if _state["debug"]:
            raise
        typed = typed_fix(_state["verb"], err.suggest)
        typer.echo(f"error: {err.render()}" + (f"\n  on this command line: {typed}" if typed else ""), err=True)
        sys.exit(EXIT_USER_ERROR)
    except ClickException as err:
        if type(err).__name__ != "NoArgsIsHelpError":  # bare `tunesmith`: the help was the answer
            ctx = getattr(err, "ctx", None)
            usage = f"{ctx.get_usage()}\nTry '{ctx.command_path} --help' for help.\n" if ctx else ""
            typer.echo(f"{usage}error: {err.format_message()}", err=True)
        sys.exit(err.exit_code)
    except Abort:
        typer.echo("aborted", err=True)
        sys.exit(1)
    if code == 130:
        # typer turns Ctrl-C (KeyboardInterrupt) into exit 130 (typer/core.py `_main`); no verb exits 130
        # itself, so this is the place to say what an interrupted run leaves behind.
        typer.echo("\ninterrupted" + ("; re-run the same command to resume from the last complete checkpoint"
                                      if _state["training"] else ""), err=True)
    sys.exit(code if isinstance(code, int) else 0)
