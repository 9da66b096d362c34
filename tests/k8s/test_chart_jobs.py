"""The chart's data Jobs, run for real: rendered by helm, then executed with their exact command,
environment and mounts.

There is no cluster here, so a pod's container is emulated with bubblewrap: the host's root
filesystem read-only (the pod's ``readOnlyRootFilesystem``), each volumeMount bound at its exact
mountPath (read-only where the pod mounts it read-only), the pod's ``runAsUser``/``runAsGroup``, no
network, and only the container's environment. Claims and ConfigMaps are directories under
``tmp_path``. The one substitution: ``PDS_DATABASE__URL`` comes from a Secret in the cluster; here
it names a SQLite file on an extra mount (the network database of the real Job).

Checked: the registry-sync hook registers the project, then the extract-build hook (ordered after
it by weight) builds, checks and publishes the extract on the project's claim with the layout the
builder expects, the lake staying read-only; ``pds extract check`` passes; a re-run of the same Job
does nothing; a new rebuild token rebuilds; what a workspace mounts (``subPath: extract``) holds
the published build only.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import os
import shutil
import stat
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from pds_kernel.extract.conformity import MANIFEST
from pds_kernel.extract.layout import entry_files

from .conftest import HUB_HOST_VALUES, REPO, chart_without_dependencies, helm_available
from .test_chart import helm, render

BWRAP = shutil.which("bwrap")


def _bwrap_works() -> bool:
    if BWRAP is None:
        return False
    probe = subprocess.run([BWRAP, "--ro-bind", "/", "/", "--unshare-user", "--uid", "1000", "true"],
                           capture_output=True, timeout=30, check=False)
    return probe.returncode == 0


pytestmark = [
    pytest.mark.skipif(not helm_available(), reason="helm binary missing: run `make helm`"),
    pytest.mark.skipif(not _bwrap_works(), reason="bubblewrap (user namespaces) is needed to emulate a pod"),
]

PROJECT = "diab-study"
DB_MOUNT = "/srv/test-database"  # stands for the PostgreSQL server the real Job reaches


def _extract_lake_module():
    """The small lake of tests/extract (rows kept in Python), loaded from its file."""
    path = REPO / "tests" / "extract" / "extract_lake.py"
    spec = importlib.util.spec_from_file_location("k8s_jobs_extract_lake", path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


LAKE = _extract_lake_module()


# ---- a pod's container, emulated ----------------------------------------------------------------
class Cluster:
    """Claims, ConfigMaps and emptyDirs as directories; runs a container of a rendered pod."""

    #: Secrets the operator creates before install (docs/deploy-kubernetes.md)
    secrets = {"pds-audit-key": {"key": "5f" * 32}}

    def __init__(self, root: Path, docs: list[dict], database: Path):
        self.root = root
        self.docs = docs
        self.database = database
        self.claims = root / "claims"
        self.claims.mkdir(parents=True, exist_ok=True)

    def claim(self, name: str) -> Path:
        path = self.claims / name
        path.mkdir(exist_ok=True)
        return path

    def config_map(self, name: str) -> Path:
        cm = next(d for d in self.docs if d["kind"] == "ConfigMap" and d["metadata"]["name"] == name)
        path = self.root / "configmaps" / name
        shutil.rmtree(path, ignore_errors=True)
        path.mkdir(parents=True)
        for key, value in cm["data"].items():
            (path / key).write_text(value, encoding="utf-8")
        return path

    def volume_source(self, volume: dict) -> tuple[Path, bool]:
        """(host directory, mounted read-only by the volume itself)"""
        if "persistentVolumeClaim" in volume:
            pvc = volume["persistentVolumeClaim"]
            return self.claim(pvc["claimName"]), bool(pvc.get("readOnly"))
        if "configMap" in volume:
            return self.config_map(volume["configMap"]["name"]), True  # ConfigMaps are read-only
        if "secret" in volume:  # the operator's Secret (created before install), as files
            secret = volume["secret"]
            path = self.root / "secrets" / volume["name"]
            shutil.rmtree(path, ignore_errors=True)
            path.mkdir(parents=True)
            for item in secret["items"]:
                (path / item["path"]).write_text(self.secrets[secret["secretName"]][item["key"]])
                os.chmod(path / item["path"], secret["defaultMode"] | 0o004)  # group = fsGroup in a pod
            return path, True
        if "emptyDir" in volume:
            path = self.root / "emptydir" / f"{volume['name']}-{os.urandom(4).hex()}"
            path.mkdir(parents=True)
            return path, False
        raise AssertionError(f"volume kind not emulated: {volume}")

    def run(self, job: dict, command: list[str] | None = None) -> subprocess.CompletedProcess:
        pod = job["spec"]["template"]["spec"]
        (container,) = pod["containers"]
        assert container["securityContext"]["readOnlyRootFilesystem"] is True
        volumes = {v["name"]: v for v in pod["volumes"]}
        binds: list[tuple[Path, str, bool]] = []
        for mount in container["volumeMounts"]:
            source, read_only = self.volume_source(volumes[mount["name"]])
            binds.append((source, mount["mountPath"], read_only or bool(mount.get("readOnly"))))
        binds.append((self.database, DB_MOUNT, False))
        env = {"PATH": f"{Path(sys.executable).parent}:/usr/local/bin:/usr/bin:/bin", "LANG": "C.UTF-8"}
        for item in container["env"]:
            if "value" in item:
                env[item["name"]] = item["value"]
            elif item["name"] == "PDS_DATABASE__URL":
                env[item["name"]] = f"sqlite:///{DB_MOUNT}/pds.db"
            else:
                raise AssertionError(f"env not emulated: {item}")
        argv = command or [*container["command"], *container.get("args", [])]
        security = pod["securityContext"]
        return subprocess.run(bwrap_argv(binds, env, security["runAsUser"], security["runAsGroup"]) + argv,
                              capture_output=True, text=True, timeout=600, check=False)


def bwrap_argv(binds: list[tuple[Path, str, bool]], env: dict, uid: int, gid: int) -> list[str]:
    """bubblewrap: read-only root, the binds at their exact paths, the pod's user, no network.

    A mount point whose parent does not exist on the host (``/srv/pds/...``, ``/etc/pds``) needs a
    writable place to be made in: the nearest existing ancestor gets a tmpfs holding read-only
    binds of its host entries, and is made read-only again at the end.
    """
    argv = [BWRAP, "--ro-bind", "/", "/", "--dev", "/dev", "--proc", "/proc",
            "--unshare-user", "--unshare-net", "--unshare-pid", "--die-with-parent", "--clearenv"]
    faked: list[str] = []
    for _, target, _ in binds:
        if Path(target).exists():
            continue  # an existing directory (e.g. /tmp): bound over directly
        ancestor = Path(target).parent
        while not ancestor.exists():
            ancestor = ancestor.parent
        assert ancestor != Path("/"), f"cannot emulate a mount point at {target}"
        if str(ancestor) in faked:
            continue
        faked.append(str(ancestor))
        argv += ["--tmpfs", str(ancestor)]
        for entry in sorted(ancestor.iterdir()):
            if entry.is_symlink():
                argv += ["--symlink", os.readlink(entry), str(entry)]
            else:
                argv += ["--ro-bind", str(entry), str(entry)]
    for source, target, read_only in binds:
        argv += ["--ro-bind" if read_only else "--bind", str(source), target]
    # the interpreter and this checkout stay visible when a mount (e.g. /tmp) hides them
    targets = [Path(t) for _, t, _ in binds]
    for keep in {REPO, Path(sys.prefix).resolve(), Path(sys.base_prefix).resolve()}:
        if any(keep == t or t in keep.parents for t in targets):
            argv += ["--ro-bind", str(keep), str(keep)]
    for path in faked:
        argv += ["--remount-ro", path]
    for key, value in env.items():
        argv += ["--setenv", key, value]
    return [*argv, "--uid", str(uid), "--gid", str(gid), "--chdir", "/"]


# ---- the release --------------------------------------------------------------------------------
def values(rebuild: str = "", **extra) -> dict:
    project = {"id": PROJECT, "title": "Diabetes", "start": "2024-01-01", "end": "2099-12-31",
               "members": [{"user": "alice", "role": "researcher", "expires": "2099-01-01"}],
               "extract": {"spec": LAKE.DIABETES_SPEC.lstrip(), "rebuild": rebuild}}
    return {"users": [{"name": "alice"}], "projects": [project],
            "networkPolicy": {"databasePeers": [{"ipBlock": {"cidr": "10.20.0.5/32"}}]}, **extra}


def render_values(chart: Path, tmp_path: Path, data: dict) -> list[dict]:
    path = tmp_path / f"values-{hashlib.sha256(json.dumps(data, sort_keys=True).encode()).hexdigest()[:8]}.yaml"
    path.write_text(yaml.safe_dump(data))
    return render(chart, [path])


def jobs(docs: list[dict]) -> dict[str, dict]:
    return {d["metadata"]["name"]: d for d in docs if d["kind"] == "Job"}


def extract_job(docs: list[dict]) -> dict:
    (job,) = [j for n, j in jobs(docs).items() if n.startswith(f"pds-extract-{PROJECT}-")]
    return job


def tree_digest(root: Path) -> dict[str, str]:
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


def set_read_only(root: Path, read_only: bool) -> None:
    for path in [root, *root.rglob("*")]:
        mode = path.stat().st_mode
        if read_only:
            os.chmod(path, mode & ~(stat.S_IWUSR | stat.S_IWGRP | stat.S_IWOTH))
        else:
            os.chmod(path, mode | stat.S_IWUSR)


@pytest.fixture
def chart(tmp_path) -> Path:
    return chart_without_dependencies(tmp_path / "chart")


@pytest.fixture
def cluster(tmp_path, chart):
    docs = render_values(chart, tmp_path, values())
    database = tmp_path / "database"
    database.mkdir()
    os.chmod(database, 0o777)
    c = Cluster(tmp_path / "cluster", docs, database)
    lake = c.claim("pds-lake")
    LAKE.write_lake(lake, LAKE.generate_rows())
    set_read_only(lake, True)
    for name in ("pds-keys", f"extract-{PROJECT}", "pds-audit-anchor"):
        os.chmod(c.claim(name), 0o777)  # what fsGroup gives the pod's group on a fresh claim
    yield c
    set_read_only(lake, False)


# ---- tests ----------------------------------------------------------------------------------------
def test_hooks_order_the_build_after_the_registry_sync(chart, tmp_path):
    docs = render_values(chart, tmp_path, values())
    sync, build = jobs(docs)["pds-registry-sync-1"], extract_job(docs)
    for job in (sync, build):
        assert set(job["metadata"]["annotations"]["helm.sh/hook"].split(",")) == {"post-install", "post-upgrade"}
    assert int(sync["metadata"]["annotations"]["helm.sh/hook-weight"]) < int(
        build["metadata"]["annotations"]["helm.sh/hook-weight"])
    # Helm 4 re-applies an identical hook Job instead of deleting it first
    assert build["metadata"]["annotations"]["helm.sh/hook-delete-policy"] == "hook-failed"


def test_job_names_change_with_the_spec_or_the_token_only(chart, tmp_path):
    base = extract_job(render_values(chart, tmp_path, values()))["metadata"]["name"]
    same = extract_job(render_values(chart, tmp_path, values(airlock={"replicas": 3})))["metadata"]["name"]
    token = extract_job(render_values(chart, tmp_path, values(rebuild="2026-03")))["metadata"]["name"]
    changed = values()
    changed["projects"][0]["extract"]["spec"] = changed["projects"][0]["extract"]["spec"].replace(
        "years: [2022, 2023]", "years: [2023]")
    spec = extract_job(render_values(chart, tmp_path, changed))["metadata"]["name"]
    assert base == same and len({base, token, spec}) == 3
    assert all(len(n) <= 63 for n in (base, token, spec))
    # the ingestion Job: named after the delivery and its definition, not the release revision
    ingest = {"ingest": {"enabled": True, "delivery": "2026-03"}}
    first = [n for n in jobs(render_values(chart, tmp_path, values(**ingest))) if n.startswith("pds-ingest-")]
    again = [n for n in jobs(render_values(chart, tmp_path, values(airlock={"replicas": 3}, **ingest)))
             if n.startswith("pds-ingest-")]
    other = [n for n in jobs(render_values(chart, tmp_path, values(ingest={"enabled": True, "delivery": "2026-04"})))
             if n.startswith("pds-ingest-")]
    assert first == again and first[0].startswith("pds-ingest-2026-03-") and first != other


@pytest.mark.parametrize("spec,message", [
    ("project: other-study\nyears: [2022]\n", 'its project is "other-study"; it must be "diab-study"'),
    ("project: [unclosed\n", "is not valid YAML"),
])
def test_a_spec_for_another_project_is_refused_at_render(chart, tmp_path, spec, message):
    data = values()
    data["projects"][0]["extract"]["spec"] = spec
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(data))
    result = helm("template", "pds", str(chart), "-f", str(HUB_HOST_VALUES), "-f", str(path))
    assert result.returncode != 0 and message in result.stderr, result.stderr


def test_db_upgrade_hook_runs_first_and_every_audit_writer_anchors(cluster):
    """The pre-install/pre-upgrade Job creates (then keeps) the schema; the Jobs that audit write
    keyed entries with the Secret's key and anchor them on the anchor claim; verification there
    finds the chain intact."""
    docs = cluster.docs
    upgrade = jobs(docs)["pds-db-upgrade-1"]
    hooks = set(upgrade["metadata"]["annotations"]["helm.sh/hook"].split(","))
    assert hooks == {"pre-install", "pre-upgrade"}
    assert int(upgrade["metadata"]["annotations"]["helm.sh/hook-weight"]) < 0
    for _ in range(2):  # idempotent: the second run finds nothing to do
        done = cluster.run(upgrade)
        assert done.returncode == 0, done.stdout + done.stderr
    assert "already at schema revision" in done.stdout
    sync = cluster.run(jobs(docs)["pds-registry-sync-1"])
    assert sync.returncode == 0, sync.stderr
    anchors = (cluster.claim("pds-audit-anchor") / "anchors.jsonl").read_text().splitlines()
    assert anchors and all(json.loads(a)["key_id"] for a in anchors)
    # the scheduled verification, run once: intact, and it anchors the head
    (cron,) = [d for d in docs if d["kind"] == "CronJob" and d["metadata"]["name"] == "pds-audit-verify"]
    verify = cluster.run({"spec": cron["spec"]["jobTemplate"]["spec"]})
    assert verify.returncode == 0 and "intact" in verify.stdout, verify.stdout + verify.stderr
    last = json.loads((cluster.claim("pds-audit-anchor") / "anchors.jsonl").read_text().splitlines()[-1])
    assert last["reason"] == "verify"
    # every pod of the chart that reaches the database and audits mounts the same key and anchors
    for doc in docs:
        if doc["kind"] not in ("Job", "Deployment", "CronJob") or doc["metadata"]["name"] == "pds-db-upgrade-1":
            continue
        spec = doc["spec"]["jobTemplate"]["spec"] if doc["kind"] == "CronJob" else doc["spec"]
        (container,) = spec["template"]["spec"]["containers"]
        if doc["metadata"]["name"] == "pds-packages":  # the package index: no database, no audit
            assert "env" not in container and "/etc/pds-audit" not in str(container["volumeMounts"])
            continue
        env = {e["name"]: e.get("value") for e in container["env"]}
        mounts = {m["mountPath"]: m for m in container["volumeMounts"]}
        assert env["PDS_AUDIT__KEY_FILE"] == "/etc/pds-audit/key" and env["PDS_AUDIT__CREATE_KEY"] == "false"
        assert env["PDS_AUDIT__ANCHOR_FILE"].startswith("/srv/pds/audit-anchor/")
        assert mounts["/etc/pds-audit"].get("readOnly") is True and "/srv/pds/audit-anchor" in mounts


def test_emulated_pod_is_read_only_outside_its_writable_mounts(cluster):
    job = extract_job(cluster.docs)
    for target, ok in (("/srv/pds/lake/x", False), ("/x", False), ("/etc/pds-extract/x", False),
                       (f"/srv/pds/projects/{PROJECT}/x", True), ("/tmp/x", True)):
        result = cluster.run(job, ["sh", "-c", f"touch {target}"])
        assert (result.returncode == 0) is ok, (target, result.stderr)
    result = cluster.run(job, ["id", "-u"])
    assert result.stdout.strip() == "1000"
    os.remove(cluster.claim(f"extract-{PROJECT}") / "x")


def test_registry_sync_then_extract_build_publish_and_check(cluster, chart, tmp_path):
    lake = cluster.claim("pds-lake")
    lake_before = tree_digest(lake)
    sync = cluster.run(jobs(cluster.docs)["pds-registry-sync-1"])
    assert sync.returncode == 0, sync.stderr
    job = extract_job(cluster.docs)

    built = cluster.run(job)
    assert built.returncode == 0, built.stdout + built.stderr
    assert "published" in built.stdout

    claim = cluster.claim(f"extract-{PROJECT}")
    link = claim / "extract"
    assert link.is_symlink() and os.readlink(link).startswith("builds/")
    manifest = json.loads((link / MANIFEST).read_text())
    assert manifest["builder"] == "service:extract-build" and manifest["project"] == PROJECT
    assert (claim / "spec.yaml").read_text() == LAKE.DIABETES_SPEC.lstrip()
    assert manifest["spec_sha256"] == job["metadata"]["annotations"]["pds.spec-sha256"]
    assert not list(claim.glob(".staging-*"))
    published = link.resolve()
    assert published.parent == (claim / "builds").resolve()
    for path in published.rglob("*"):  # files read-only; a partitioned table's directory too
        assert stat.S_IMODE(path.stat().st_mode) == (0o555 if path.is_dir() else 0o444), path
    assert stat.S_IMODE(published.stat().st_mode) == 0o555
    assert tree_digest(lake) == lake_before  # the lake is untouched
    assert (cluster.claim("pds-keys") / "keys").is_dir()  # the key store, below the claim's root

    # what a workspace or Dask worker mounts: the claim with subPath `extract` (the kubelet
    # resolves the link inside the volume): the published build, nothing of the claim's root
    tops = {f["file"].split("/")[0] for t in manifest["tables"].values() for f in entry_files(t)}
    assert {p.name for p in published.iterdir()} == {MANIFEST, *tops}  # a partitioned table: its directory

    check = cluster.run(job, ["python", "-m", "pds_kernel.k8s", "extract-check", PROJECT])
    assert check.returncode == 0 and "conforms" in check.stdout, check.stdout + check.stderr

    # the same Job again (re-created by an upgrade, or retried): nothing to do
    again = cluster.run(job)
    assert again.returncode == 0 and "nothing to do" in again.stdout, again.stdout + again.stderr
    assert os.readlink(link) == f"builds/{manifest['build_id']}"

    # a new rebuild token: a new Job, which rebuilds and removes the previous build
    rebuild_job = extract_job(render_values(chart, tmp_path, values(rebuild="2026-03")))
    assert rebuild_job["metadata"]["name"] != job["metadata"]["name"]
    rebuilt = cluster.run(rebuild_job)
    assert rebuilt.returncode == 0 and "published" in rebuilt.stdout, rebuilt.stdout + rebuilt.stderr
    second = json.loads((link / MANIFEST).read_text())
    assert second["build_id"] != manifest["build_id"]
    assert [p.name for p in (claim / "builds").iterdir()] == [second["build_id"]]
    assert second["tables"] == manifest["tables"]  # same spec, same lake, same key: same bytes
    assert tree_digest(lake) == lake_before


def test_build_job_refuses_a_spec_it_was_not_made_for(cluster):
    """A later upgrade changed the ConfigMap under a Job still waiting: it refuses to build."""
    sync = cluster.run(jobs(cluster.docs)["pds-registry-sync-1"])
    assert sync.returncode == 0, sync.stderr
    job = extract_job(cluster.docs)
    command = list(job["spec"]["template"]["spec"]["containers"][0]["command"])
    command[command.index("--spec-sha256") + 1] = "0" * 64
    result = cluster.run(job, command)
    assert result.returncode == 2 and "a later helm upgrade changed the spec" in result.stderr, result.stderr
    assert not (cluster.claim(f"extract-{PROJECT}") / "extract").exists()


def test_build_job_without_registered_project_is_refused(cluster):
    """Without the registry-sync hook first, the project is unknown: no build, exit code 3."""
    result = cluster.run(extract_job(cluster.docs))
    assert result.returncode == 3 and PROJECT in result.stderr, result.stdout + result.stderr
    assert not (cluster.claim(f"extract-{PROJECT}") / "extract").exists()
