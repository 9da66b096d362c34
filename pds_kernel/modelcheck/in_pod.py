"""The model check inside its Kubernetes Job (model-check image; gate side: :mod:`.k8s_job`).

``python -I -m pds_kernel.modelcheck.in_pod JOB_JSON``: the pod sees the project's extract at
``/data``, the staged model at :data:`MODEL_DIR` and the author's home at :data:`AUTHOR_HOME`
(all read-only), and a size-limited scratch ``/tmp`` (its only writable place). It snapshots the
declared files from the home exactly as the local gate does (:func:`.inputs.snapshot`: paths
relative to the home, no link followed, bounded), runs :func:`.run.attack`, and prints the
report and the ROC plot as the last line of its log, after :data:`RESULT_MARKER`; the gate reads
that line as untrusted input (size-bounded, validated by :mod:`.verdict`).
"""

from __future__ import annotations

import base64
import json
import sys
import traceback
from pathlib import Path

#: the line of the pod's log that carries the result
RESULT_MARKER = "PDS-MODEL-CHECK-RESULT "
AUTHOR_HOME = Path("/srv/model-check/author-home")
MODEL_DIR = Path("/srv/model-check/model")
SCRATCH = Path("/tmp/pds-model-check")


def check_in_pod(job: dict) -> tuple[dict, bytes | None]:
    """(report, plot PNG or None) of the check described by ``job`` (see :mod:`.k8s_job`)."""
    from ..errors import InvalidInput
    from .inputs import snapshot
    from .run import BadDeclaration, attack

    out = SCRATCH / "out"
    out.mkdir(parents=True, exist_ok=True)
    try:
        files = snapshot(AUTHOR_HOME, job["declaration"], SCRATCH / "inputs", int(job["max_input_bytes"]))
        run_job = {**{k: v for k, v in job.items() if k not in ("declaration", "max_input_bytes")},
                   **{key: str(path) for key, path in files.items()}}
        report = attack(run_job, out)
    except (InvalidInput, BadDeclaration) as exc:
        report = {"status": "bad-declaration", "reason": str(exc)}
    except Exception as exc:  # reported to the gate: the model goes to review with the reason
        traceback.print_exc()
        report = {"status": "error", "reason": f"{type(exc).__name__}: {str(exc)[:300]}"}
    plot = out / "roc.png"
    return report, (plot.read_bytes() if plot.is_file() else None)


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    report, plot = check_in_pod(json.loads(args[0]))
    result = {"report": report, "plot_png": base64.b64encode(plot).decode("ascii") if plot else None}
    sys.stdout.flush()
    print(RESULT_MARKER + json.dumps(result, allow_nan=False, default=str), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
