"""``python -m pds_kernel.k8s``: the commands of the chart's Jobs.

``registry-apply FILE``
    Helm values (``projects:``, ``users:``) are rendered into the ``pds-config`` ConfigMap; after
    every install and upgrade a Job runs this to make the registry database match it (each change
    audited by the registry service). It acts as the service identity ``service:registry-sync``,
    whose only right is to apply the declared registry (:data:`pds_kernel.permissions.SERVICE_RIGHTS`).

``extract-build PROJECT --spec FILE --spec-sha256 HEX --rebuild TOKEN``
    The extract-build Job of one project. Its claim is mounted as ``projects/<id>`` (the layout
    ``pds_kernel.extract.build`` expects: ``spec.yaml``, ``builds/``, the ``extract`` link); the
    spec comes from a ConfigMap. The Job is named after the spec's hash, and Kubernetes may run it
    again (a Job re-created by a later ``helm upgrade``, a retry), so the command is idempotent: it
    builds only when the published extract does not already come from this spec and rebuild token,
    and holds a lock on the claim so two builds of one project never overlap. It acts as the
    service identity ``service:extract-build``, whose only right is to build (and check) extracts.

``extract-check PROJECT``
    The conformity check of a project's published extract, as ``service:extract-build``.

``package-approve NAME==VERSION``
    A package-approval Job (one per release listed in the chart's ``packages.approve``): downloads
    the release and its dependency closure into the package index's storage. It acts as the service
    identity ``service:package-approval``, whose only right is to approve packages.

``cohort-link PROJECT``
    The gate's cohort-link Job (:mod:`pds_kernel.airlock.cohort_link_job`, which writes its
    manifest): links the staged cohort list mounted at ``/srv/pds/cohort-link/list.csv`` with the
    project's key (``paths.keys``) and the trusted third party's correspondence (``paths.ttp``)
    into ``/srv/pds/cohort-link/out`` (``cohort.csv``, ``match_report.json``; a pod-local folder the
    Job's second container copies them from, bounded, to the staging claim) and prints its result
    as the last log line (``PDS-COHORT-LINK-RESULT {json}``; a refusal as ``{"error", "kind"}``).
    Paths are fixed: the only argument is the project id. It acts as ``service:cohort-link``, whose
    only right is linking a staged cohort list of a project.

Errors print one line and exit non-zero (the ``PdsError`` exit code).
"""

from __future__ import annotations

import argparse
import fcntl
import json
import os
import secrets
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from ..errors import InvalidInput, PdsError
from ..permissions import (
    SERVICE_COHORT_LINK,
    SERVICE_EXTRACT_BUILD,
    SERVICE_PACKAGE_APPROVAL,
    SERVICE_REGISTRY_SYNC,
)
from ..registry import Registry
from ..registry.names import check_project_id
from ..registry.spec import load_registry_file
from ..runtime import Runtime
from ..settings import load_settings

#: On the project's claim: which spec and rebuild token the published extract was built from.
BUILT_FROM = ".helm-extract.json"
#: On the project's claim: held while a build Job runs.
BUILD_LOCK = ".build.lock"


def registry_apply(args) -> int:
    spec = load_registry_file(args.file)
    runtime = Runtime(load_settings())
    try:
        changes = Registry.from_runtime(runtime).apply(SERVICE_REGISTRY_SYNC, spec)
    finally:
        runtime.close()
    for change in changes:
        print(change)
    print(f"registry: {len(changes)} change(s)")
    return 0


# ---- extract builds ----------------------------------------------------------------------------
@contextmanager
def build_lock(project_dir: Path) -> Iterator[None]:
    """An exclusive lock on the project's claim (flock: released by the kernel if the pod dies)."""
    with open(project_dir / BUILD_LOCK, "a") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            print("another build of this project is running: waiting for it", flush=True)
            fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def read_built_from(project_dir: Path) -> dict:
    try:
        return json.loads((project_dir / BUILT_FROM).read_text(encoding="utf-8"))
    except (FileNotFoundError, ValueError):
        return {}


def write_built_from(project_dir: Path, record: dict) -> None:
    """Atomically: a half-written record must never make a later Job skip a build."""
    tmp = project_dir / f".{BUILT_FROM}.{secrets.token_hex(4)}"
    tmp.write_text(json.dumps(record, sort_keys=True) + "\n", encoding="utf-8")
    os.replace(tmp, project_dir / BUILT_FROM)


def up_to_date(settings, project: str, spec_sha256: str, rebuild: str) -> dict | None:
    """The published manifest when it comes from this spec and rebuild token, else None."""
    from ..errors import NotFound
    from ..extract.build import project_dir, read_manifest

    record = read_built_from(project_dir(settings, project))
    try:
        manifest = read_manifest(settings, project)
    except NotFound:
        return None
    wanted = {"spec_sha256": spec_sha256, "rebuild": rebuild, "build_id": manifest.get("build_id")}
    if manifest.get("spec_sha256") == spec_sha256 and all(record.get(k) == v for k, v in wanted.items()):
        return manifest
    return None


def extract_build(args) -> int:
    from ..extract.build import project_dir, run_build
    from ..extract.spec import load_spec

    project = check_project_id(args.project)
    spec = load_spec(args.spec)
    if spec.sha256 != args.spec_sha256:
        raise InvalidInput(f"{args.spec} has SHA-256 {spec.sha256}, not the {args.spec_sha256} this Job "
                           "was made for: a later helm upgrade changed the spec, and its own Job builds it")
    settings = load_settings()
    pdir = project_dir(settings, project)
    if not pdir.is_dir():
        raise InvalidInput(f"{pdir} does not exist: the project's claim is not mounted there")
    with build_lock(pdir):
        manifest = up_to_date(settings, project, spec.sha256, args.rebuild)
        if manifest is not None:
            print(f"extract {manifest['build_id']} of {project} already comes from this spec "
                  f"(sha256 {spec.sha256[:12]}) and rebuild token {args.rebuild!r}: nothing to do")
            return 0
        runtime = Runtime(settings)
        try:
            result = run_build(runtime, project, spec, actor=SERVICE_EXTRACT_BUILD,
                               on_step=lambda step: print(f"{project}: {step}", flush=True))
        finally:
            runtime.close()
        write_built_from(pdir, {"spec_sha256": spec.sha256, "rebuild": args.rebuild,
                                "build_id": result.manifest["build_id"]})
    print(f"extract {result.manifest['build_id']} of {project} published: {result.manifest['persons']} "
          f"persons, k-anonymity {result.report.k_min}")
    return 0


def extract_check(args) -> int:
    from ..errors import DisclosureRisk
    from ..extract.build import run_check

    runtime = Runtime(load_settings())
    try:
        report = run_check(runtime, check_project_id(args.project), actor=SERVICE_EXTRACT_BUILD)
    finally:
        runtime.close()
    if not report.ok:
        raise DisclosureRisk(f"the extract of {args.project} does not conform: {'; '.join(report.reasons)}")
    print(f"extract of {args.project} conforms")
    return 0


def package_approve(args) -> int:
    from ..packages.service import PackageService

    runtime = Runtime(load_settings())
    try:
        files = PackageService(runtime).approve(SERVICE_PACKAGE_APPROVAL, args.requirement)
    finally:
        runtime.close()
    for f in files:
        print(f"{f.file} sha256={f.sha256} licence={f.licence}")
    print(f"approved {args.requirement}: {len(files)} wheel(s)")
    return 0


def cohort_link(args) -> int:
    from ..airlock import cohort_intake
    from ..airlock.cohort_link_job import EXTRACT_DIR, LIST_PATH, OUT_DIR, RESULT_MARKER
    from ..extract.tree import require_checked

    # before anything reads /data: it is the tree the pod's verify-extract container checked
    require_checked(os.environ, str(EXTRACT_DIR))
    try:
        settings = load_settings()
        result = cohort_intake.link_list(SERVICE_COHORT_LINK, check_project_id(args.project), Path(LIST_PATH),
                                         keys=settings.paths.keys, ttp=settings.paths.ttp,
                                         extract=Path(EXTRACT_DIR), out=Path(OUT_DIR))
    except PdsError as exc:
        print(RESULT_MARKER + json.dumps({"error": str(exc)[:400], "kind": type(exc).__name__}), flush=True)
        raise
    print(RESULT_MARKER + json.dumps(result, sort_keys=True), flush=True)
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m pds_kernel.k8s")
    sub = parser.add_subparsers(dest="command", required=True)
    apply = sub.add_parser("registry-apply", help="make the registry match a registry YAML file")
    apply.add_argument("file", type=Path)
    apply.set_defaults(run=registry_apply)
    build = sub.add_parser("extract-build", help="build and publish a project's extract unless it is up to date")
    build.add_argument("project")
    build.add_argument("--spec", type=Path, required=True, help="the extract spec (YAML)")
    build.add_argument("--spec-sha256", required=True, help="the SHA-256 the spec must have")
    build.add_argument("--rebuild", default="", help="rebuild token: a new one rebuilds the same spec")
    build.set_defaults(run=extract_build)
    check = sub.add_parser("extract-check", help="check that a project's published extract conforms")
    check.add_argument("project")
    check.set_defaults(run=extract_check)
    package = sub.add_parser("package-approve", help="approve one package release for the package index")
    package.add_argument("requirement", help="NAME==VERSION")
    package.set_defaults(run=package_approve)
    link = sub.add_parser("cohort-link", help="link the staged cohort list mounted in this pod (gate's Job)")
    link.add_argument("project")
    link.set_defaults(run=cohort_link)
    args = parser.parse_args(argv)
    try:
        return args.run(args)
    except PdsError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return exc.exit_code


if __name__ == "__main__":
    sys.exit(main())
