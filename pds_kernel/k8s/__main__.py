"""``python -m pds_kernel.k8s registry-apply FILE``: the chart's registry Job.

Helm values (``projects:``, ``users:``) are rendered into the ``pds-registry`` ConfigMap; after
every install and upgrade a Job runs this to make the registry database match it (each change
audited by the registry service, actor ``helm``). Errors print one line and exit non-zero.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from ..errors import PdsError
from ..registry import Registry
from ..registry.spec import load_registry_file
from ..runtime import Runtime
from ..settings import load_settings


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m pds_kernel.k8s")
    sub = parser.add_subparsers(dest="command", required=True)
    apply = sub.add_parser("registry-apply", help="make the registry match a registry YAML file")
    apply.add_argument("file", type=Path)
    apply.add_argument("--actor", default="helm", help="audit actor (default: helm)")
    args = parser.parse_args(argv)
    try:
        spec = load_registry_file(args.file)
        runtime = Runtime(load_settings())
        try:
            changes = Registry.from_runtime(runtime).apply(args.actor, spec)
        finally:
            runtime.close()
    except PdsError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return exc.exit_code
    for change in changes:
        print(change)
    print(f"registry: {len(changes)} change(s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
