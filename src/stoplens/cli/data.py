"""`stoplens data` (not built yet)."""

from __future__ import annotations

import typer

from stoplens.errors import StoplensError


def register(app: typer.Typer) -> None:
    @app.command("data", help="NOT BUILT YET: this stage is not implemented in this version.")
    def _cmd() -> None:
        raise StoplensError("`stoplens data` is not built yet in this version")
