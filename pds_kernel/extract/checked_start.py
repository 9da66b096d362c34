"""``python -I -m pds_kernel.extract.checked_start COMMAND [ARG...]``: start ``COMMAND`` only on the
extract its pod's ``verify-extract`` init container checked (ADR 0011).

A Dask worker pod on Kubernetes runs dask's own command (dask-gateway writes it as the container's
arguments); this is the container's ``command`` before them (:func:`pds_kernel.k8s.pods.build_cluster_overrides`).
It compares the tree mounted at ``/data`` with the fingerprint the init container recorded
(:func:`pds_kernel.extract.tree.require_checked`: ``$PDS_EXTRACT_CHECKED`` must name the record) and
then replaces itself with ``COMMAND``, its arguments and environment unchanged. Otherwise it exits
:data:`~pds_kernel.extract.tree.REFUSED_EXIT` with the reason on standard error and in
``/dev/termination-log``: the worker never starts on an extract re-pointed or changed between the
two containers. Standard library only, as :mod:`.tree`.
"""

from __future__ import annotations

import os
import sys

from .tree import require_checked

DATA = "/data"


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv:
        print("usage: python -I -m pds_kernel.extract.checked_start COMMAND [ARG...]", file=sys.stderr)
        return 2
    require_checked(os.environ, DATA)
    sys.stdout.flush()
    sys.stderr.flush()
    os.execvp(argv[0], argv)
    return 127  # not reached: execvp replaces this process or raises


if __name__ == "__main__":
    sys.exit(main())
