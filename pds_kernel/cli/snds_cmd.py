"""``pds snds``: the synthetic SNDS delivery generator."""

from __future__ import annotations

import typer

app = typer.Typer(help="Synthetic SNDS deliveries (no real data, ever).", no_args_is_help=True)
