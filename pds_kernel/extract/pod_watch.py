"""Whether a Kubernetes workspace's ``/data`` is still the tree its pod checked: the notebook's liveness probe.

A workspace pod's ``verify-extract`` init container checks the mounted extract against the audit
trail and records the fingerprint of the tree it verified (:func:`.tree.main`, ADR 0011); the
notebook's start compares its ``/data`` with that record (:func:`.tree.refuse_unless_checked`).
Nothing looked again while the notebook ran: a file of the project's claim written, replaced, added
or removed afterwards (by anything with write access to the volume) was served unchecked until the
next start. Locally the hub's watcher stops such a workspace (:mod:`.mount_watch`).

In a pod, the kubelet runs this module as the notebook container's liveness probe
(:func:`pds_kernel.k8s.pods.extract_watch_probe`) every ``workspace.extractWatchSeconds`` (10 s by
default): ``python -I -m pds_kernel.extract.pod_watch /data --record FILE`` exits 0 when the tree at
``/data`` has the recorded fingerprint (:func:`.tree.fingerprint`: one ``lstat`` per entry, no
file's content read), and :data:`~.tree.REFUSED_EXIT` otherwise, saying why on standard error and
in ``/dev/termination-log``. The kubelet then kills the notebook container; its restart runs the
launcher's own comparison, which refuses the changed tree, and the hub's spawner reads that refusal
in the pod's status, stops the server and audits it (:class:`pds_kernel.hub.kube_spawner.PdsKubeSpawner`).

A walk that cannot finish in time (storage slow to answer ``lstat``, a loaded node) must not end
in the kubelet's own timeout, which kills the notebook and leaves no word of why: ``--deadline``
(:func:`pds_kernel.k8s.pods.watch_deadline`, below the probe's ``timeoutSeconds``) bounds the walk;
past it a watchdog thread writes :data:`UNFINISHED` in ``/dev/termination-log`` and ends the probe
with :data:`~.tree.REFUSED_EXIT`. The probe still fails (deny by default: a tree not verified is not
served): the kubelet kills the notebook; its restart's launcher compares the whole tree again before
it serves, and refuses a changed one. The hub reads that message in the pod's status and audits the
restart with its cause (``workspace.restart``: :mod:`pds_kernel.k8s.restarts`), not as a change.

Why a probe and not a watcher process of its own (a sidecar): the kubelet is the loop. Each check
is a fresh process; one that fails for any reason (a record missing or not this tree's, a tree it
cannot read, too deep or too large to walk before the probe's timeout, the process killed) fails
the probe, and a failed probe ends the notebook. A sidecar's loop could die or hang and leave the
notebook serving unwatched, could end the notebook only by sharing the pod's process namespace
(which shows it, and its files, to the researcher's processes), and the chart's oldest Kubernetes
(1.28) has no native sidecars by default.

Standard library only (it runs in the notebook image, as :mod:`.tree` does).
"""

from __future__ import annotations

import argparse
import os
import sys
import threading

from .tree import REFUSED_EXIT, UNREADABLE, matches_record, refuse_to_start

#: what the probe says of a tree that is not the one checked at the start
CHANGED = ("it changed while the workspace ran: {directory} is not the tree its pod's verify-extract "
           "container checked at the start (a file written, replaced, added or removed since)")


#: how the termination message of a walk that did not finish before ``--deadline`` begins (the hub
#: reads it: :mod:`pds_kernel.k8s.restarts`); not a refusal's (the tree is not known to have changed)
UNFINISHED_PREFIX = "the extract watch could not finish"
UNFINISHED = (UNFINISHED_PREFIX + " comparing {directory} with its pod's check within {deadline:g} s (its own "
              "limit, below the liveness probe's timeout): the notebook is ended unverified; its restart "
              "compares the whole tree again before it serves")


def _say(message: str) -> None:
    print(message, file=sys.stderr, flush=True)
    try:
        with open("/dev/termination-log", "w", encoding="utf-8") as log:
            log.write(message)
    except OSError:
        pass


def start_watchdog(directory: str, deadline: float) -> threading.Timer:
    """After ``deadline`` seconds, say :data:`UNFINISHED` and end this process at once with
    :data:`~.tree.REFUSED_EXIT` (the walk may be blocked in a system call: only ``os._exit`` is sure)."""
    def expire() -> None:
        _say(UNFINISHED.format(directory=directory, deadline=deadline))
        os._exit(REFUSED_EXIT)

    timer = threading.Timer(deadline, expire)
    timer.daemon = True
    timer.start()
    return timer


def change(record: str, directory: str) -> str | None:
    """Why the tree at ``directory`` is not the one whose fingerprint ``record`` holds, or ``None``.
    Deny by default: a record or a tree that cannot be read, or a walk that fails in any way (a tree
    too deep for the interpreter, memory), is a reason too."""
    try:
        same = matches_record(record, directory)
    except UNREADABLE as exc:
        return f"its pod's check of {directory} cannot be compared with it any more ({type(exc).__name__}: {exc})"
    return None if same else CHANGED.format(directory=directory)


def main(argv: list[str] | None = None) -> int:
    """``python -I -m pds_kernel.extract.pod_watch DIR --record FILE [--deadline S]``: exit 0 when the tree at ``DIR``
    is the one ``verify-extract`` recorded in ``FILE``, else :data:`~.tree.REFUSED_EXIT` (the reason
    on standard error and in ``/dev/termination-log``)."""
    parser = argparse.ArgumentParser(prog="pds_kernel.extract.pod_watch",
                                     description="compare a mounted extract with its pod's check")
    parser.add_argument("directory")
    parser.add_argument("--record", required=True, help="the fingerprint verify-extract recorded")
    parser.add_argument("--deadline", type=float, default=None,
                        help="seconds the walk may take; past them it fails, saying so")
    args = parser.parse_args(argv)
    if args.deadline is not None and not 0 < args.deadline <= 600:
        parser.error("--deadline: between 0 and 600 seconds")
    from ..sandbox.notebook_server import make_undumpable  # not at the top: sandbox imports extract

    make_undumpable()  # no process of the researcher's (same user) may trace this one
    watchdog = start_watchdog(args.directory, args.deadline) if args.deadline is not None else None
    why = change(args.record, args.directory)
    if watchdog is not None:
        watchdog.cancel()
    return 0 if why is None else refuse_to_start(why)


if __name__ == "__main__":
    sys.exit(main())
