"""The ``pds`` command: parse, call a service, render. No decisions are taken here.

Each sub-command group lives in its own module of this package; this module assembles them and
maps :class:`pds_kernel.errors.PdsError` to a one-line message and the error's exit code.
"""

from __future__ import annotations

from .app import app, main  # noqa: F401  (re-exported entry point)
