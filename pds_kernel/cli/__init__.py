"""The ``pds`` command: parse, call a service, render. No decisions are taken here.

Each sub-command group lives in its own module of this package; this module assembles them and
maps :class:`pds_kernel.errors.PdsError` to a one-line message and the error's exit code.

Every ``pds`` command loads every command module, so a module imports what only its own commands
use (the registry service, the sandbox, the demo) inside those commands: ``pds ingest`` held
~3.5 MiB of them, and needs none.
"""

from __future__ import annotations

from .app import app, main  # noqa: F401  (re-exported entry point)
