"""The command line: a thin shell, one short function per verb, each calling one library function.

A TunesmithError prints as a clear message with exit code 2 and no traceback (unless --debug). The verbs are
registered on `app` in the order `--help` lists them: a run's (runs.py), data's (data.py), a model's (models.py).
"""

from __future__ import annotations

import sys

import typer

# Each module registers its verbs on `app` when imported, in this order (the order of --help): not sorted.
from tunesmith.cli import runs  # noqa: F401, I001
from tunesmith.cli import data  # noqa: F401
from tunesmith.cli import models  # noqa: F401
from tunesmith.cli.shell import _config, _state, app, typed_fix  # noqa: F401  (_config: the board's form test rebuilds a config)
from tunesmith.errors import EXIT_USER_ERROR, TunesmithError


def main() -> None:
    import warnings

    # TRL 1.16 and PEFT 0.21 still use transformers' renamed gradient-checkpointing names; not the user's to fix.
    warnings.filterwarnings("ignore", message=r".*gradient_checkpointing.*deprecated", category=FutureWarning)
    # Standalone mode lets typer turn usage errors (bad flag values) into exit code 2 itself.
    try:
        app()
    except TunesmithError as err:
        if _state["debug"]:
            raise
        typed = typed_fix(_state["verb"], err.suggest)
        typer.echo(f"error: {err.render()}" + (f"\n  on this command line: {typed}" if typed else ""), err=True)
        sys.exit(EXIT_USER_ERROR)
    except SystemExit as done:
        # typer turns Ctrl-C (KeyboardInterrupt) into a silent exit 130 (typer/core.py `_main`); no verb exits
        # 130 itself, so this is the place to say what an interrupted run leaves behind.
        if done.code == 130:
            typer.echo("\ninterrupted" + ("; re-run the same command to resume from the last complete checkpoint"
                                          if _state["training"] else ""), err=True)
        raise
