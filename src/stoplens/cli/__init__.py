"""The `stoplens` command line: a thin typer app. Each stage's subcommand lives in its own
module here (``cli/<stage>.py``) and exposes ``register(app)``; the work is done by library
functions. A `StoplensError` becomes a one-line ``error: ...`` and exit code 2.

Heavy imports (torch, transformers) happen inside commands, never at import time.

Owns: the app and the error-to-exit-code mapping. Must not: hold a command's work or
import torch at import time.
"""

from __future__ import annotations

import sys

import typer

from stoplens.errors import StoplensError

COMMAND_MODULES = ("data", "train", "evaluate", "analyze", "causal", "run", "merge", "report")


def build_app() -> typer.Typer:
    """A fresh typer app with every stage's subcommand registered."""
    import importlib

    app = typer.Typer(
        name="stoplens",
        help="Train a $STOP kill switch into a causal LM and find out how the model implements it.",
        no_args_is_help=True,
        add_completion=False,
        pretty_exceptions_enable=False,
    )
    for name in COMMAND_MODULES:
        module = importlib.import_module(f"stoplens.cli.{name}")
        module.register(app)
    return app


def main(argv: list[str] | None = None) -> int:
    """Entry point; callable from tests with an argv list. Returns the exit code."""
    from stoplens.progress import quiet_library_bars

    app = build_app()
    try:
        quiet_library_bars()
        app(args=argv, standalone_mode=False)
    except StoplensError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except typer.Exit as e:
        return int(e.exit_code or 0)
    except SystemExit as e:
        return int(e.code or 0) if isinstance(e.code, int) else 1
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except Exception as e:  # click usage errors
        import click

        if isinstance(e, click.exceptions.ClickException):
            e.show()
            return e.exit_code
        if isinstance(e, click.exceptions.Abort):
            return 1
        raise
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
