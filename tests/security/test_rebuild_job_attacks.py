"""Attacks on the rebuild's Job (airlock.rebuild_runner: job; pds_kernel.airlock.rebuild_job).

A submitted file that exploits a flaw of PDFium, Pillow, openpyxl or pyarrow runs code as the
rebuild's child. Here the child is replaced by such code, run as the Job's pod in an emulated pod
(bubblewrap: the manifest's mounts at their paths, read-only where it says, its uid, no network;
tests/security/rebuild_job_support.py), and the gate's runner reads what it left as it reads a
real pod's (the pod's log cut where the API server cuts it). Whatever the child writes or says, the
gate takes back only the regular files it asked for, bounded, and refuses the batch otherwise: it
never releases a file that was not rebuilt.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
from rebuild_job_support import CFG, FILES, PROJECT, REPO, bwrap_available, emulated_cluster, run_in_pod

from pds_kernel.airlock.rebuild import rebuild_all
from pds_kernel.airlock.rebuild_collect import MAX_COPY_BYTES
from pds_kernel.airlock.rebuild_job import IN_DIR, ITEMS, MAX_LOG_BYTES, OUT_DIR, WORK_ROOT, RebuildJob, remove_work

pytestmark = pytest.mark.skipif(not bwrap_available(), reason="bubblewrap (user namespaces) emulates the pod")

#: the start of every attack: the items as the pod sees them (its sources, its out paths, the names)
_ITEMS = f"import json, os, sys\nitems = json.load(open({str(IN_DIR / ITEMS)!r}))\n"


@pytest.fixture
def platform(tmp_path):
    """(staging claim, items of one table to rebuild, a file of another project in the claim)."""
    staging = tmp_path / "claims" / "pds-staging"
    request = staging / PROJECT / "r1"
    request.mkdir(parents=True)
    source = request / "0-r1-t.parquet"
    source.write_bytes(FILES["table.parquet"]())
    other = staging / "other-project" / "r9" / "0-r1-secret.parquet"
    other.parent.mkdir(parents=True)
    other.write_bytes(b"PAR1 rows of another project PAR1")
    return staging, [(source, request / ".rebuilt-0-r1-t.parquet", "t.parquet")], other


def _attack(monkeypatch, tmp_path, staging, items, script: str) -> dict:
    """The gate's rebuild of ``items`` with the job runner, its pod's child being ``script``."""
    created = emulated_cluster(monkeypatch, staging, tmp_path / "scratch", ["-c", _ITEMS + script])
    reasons = rebuild_all(items, sandbox=RebuildJob(PROJECT, staging, CFG))
    assert len(created) == 1  # the gate did run its Job
    assert not list((staging / WORK_ROOT).iterdir())  # the work folder is gone whatever happened
    return reasons


def _refused(reasons: dict, items, why: str, taken: bool = False) -> None:
    """Every file of ``items`` refused with ``why``; no copy taken back unless ``taken`` (a copy the
    child did write; release_copies removes it with the refused batch)."""
    assert set(reasons) == {name for _, _, name in items}
    for name, reason in reasons.items():
        assert reason and why in reason, (name, reason)
    if not taken:
        for _, target, _ in items:
            assert not target.exists()


def test_the_real_child_in_the_job_rebuilds_the_file(monkeypatch, tmp_path, platform):
    staging, items, _ = platform
    emulated_cluster(monkeypatch, staging, tmp_path / "scratch")
    assert rebuild_all(items, sandbox=RebuildJob(PROJECT, staging, CFG)) == {"t.parquet": None}
    assert items[0][1].read_bytes()[:4] == b"PAR1"
    assert not list((staging / WORK_ROOT).iterdir())


def test_a_link_to_a_host_file_in_out_is_not_followed(monkeypatch, tmp_path, platform):
    """The child writes, as its copy, a link to another project's staged file (a path the gate sees)
    and says it wrote its copy: the gate opens no link."""
    staging, items, other = platform
    reasons = _attack(monkeypatch, tmp_path, staging, items,
                      f"os.symlink({str(other)!r}, items[0][1])\nprint('PDS-REBUILD-RESULT ' + json.dumps("
                      "{items[0][2]: None}))")
    _refused(reasons, items, "the rebuild wrote no copy")


def test_the_child_cannot_replace_its_out_folder(tmp_path, platform):
    """The out folder is the pod's mount point: the child cannot swap it for a link to a host folder
    (the gate opens it without following one all the same)."""
    staging, items, _ = platform
    runner = RebuildJob(PROJECT, staging, CFG)
    prepared = runner.prepare(items, 1 << 30, 60)
    script = _ITEMS + f"""found = {{}}
for what, attempt in (("renamed", lambda: os.rename({str(OUT_DIR)!r}, "/tmp/moved")),
                      ("removed", lambda: os.rmdir({str(OUT_DIR)!r}))):
    try:
        attempt()
        found[what] = True
    except OSError:
        found[what] = False
print("PROBE " + json.dumps(found))
"""
    try:
        done = run_in_pod(staging, prepared.manifest, tmp_path / "scratch", ["-c", script])
        assert (prepared.work / "out").is_dir() and not (prepared.work / "out").is_symlink()
    finally:
        runner.finish(prepared)
    assert done.returncode == 0, done.stderr[-2000:]
    assert json.loads(next(x for x in done.stdout.splitlines() if x.startswith("PROBE "))[6:]) == \
        {"renamed": False, "removed": False}


def test_a_copy_for_a_name_not_asked_refuses_the_batch(monkeypatch, tmp_path, platform):
    staging, items, _ = platform
    script = ("open(items[0][1], 'wb').write(open(items[0][0], 'rb').read())\n"
              "open(os.path.join(os.path.dirname(items[0][1]), '1.parquet'), 'wb').write(b'PAR1 planted PAR1')\n"
              "print('PDS-REBUILD-RESULT ' + json.dumps({items[0][2]: None, 'planted.parquet': None}))")
    reasons = _attack(monkeypatch, tmp_path, staging, items, script)
    _refused(reasons, items, "the rebuild's results do not name its files", taken=True)


def test_a_result_naming_other_files_refuses_the_batch(monkeypatch, tmp_path, platform):
    staging, items, _ = platform
    script = ("open(items[0][1], 'wb').write(open(items[0][0], 'rb').read())\n"
              "print('PDS-REBUILD-RESULT ' + json.dumps({'secret.parquet': None}))")
    reasons = _attack(monkeypatch, tmp_path, staging, items, script)
    _refused(reasons, items, "the rebuild's results do not name its files", taken=True)


def test_an_oversized_copy_is_not_taken(monkeypatch, tmp_path, platform):
    staging, items, _ = platform
    script = (f"with open(items[0][1], 'wb') as f:\n    f.write(b'PAR1')\n    f.truncate({MAX_COPY_BYTES + 1})\n"
              "print('PDS-REBUILD-RESULT ' + json.dumps({items[0][2]: None}))")
    reasons = _attack(monkeypatch, tmp_path, staging, items, script)
    _refused(reasons, items, "the rebuild wrote no copy")


def test_a_fifo_as_the_copy_is_not_taken_and_does_not_block_the_gate(monkeypatch, tmp_path, platform):
    staging, items, _ = platform
    script = "os.mkfifo(items[0][1])\nprint('PDS-REBUILD-RESULT ' + json.dumps({items[0][2]: None}))"
    reasons = _attack(monkeypatch, tmp_path, staging, items, script)
    _refused(reasons, items, "the rebuild wrote no copy")


def test_a_folder_as_the_copy_is_not_taken_and_does_not_break_the_copy(monkeypatch, tmp_path, platform):
    """The child makes its copy a folder holding a file and says it rebuilt it: the pod's copy to the
    claim skips it (before: it stopped there with an error), the gate takes nothing back."""
    staging, items, _ = platform
    script = ("os.makedirs(os.path.join(items[0][1], 'x'))\n"
              "print('PDS-REBUILD-RESULT ' + json.dumps({items[0][2]: None}))")
    reasons = _attack(monkeypatch, tmp_path, staging, items, script)
    _refused(reasons, items, "the rebuild wrote no copy")


def test_a_result_beyond_the_log_bound_is_no_result(monkeypatch, tmp_path, platform):
    """A real copy and a valid result, after more than the gate reads of the log: no result."""
    staging, items, _ = platform
    script = ("open(items[0][1], 'wb').write(open(items[0][0], 'rb').read())\n"
              f"for _ in range({MAX_LOG_BYTES // 1000 + 2}):\n    print('x' * 999)\n"
              "print('PDS-REBUILD-RESULT ' + json.dumps({items[0][2]: None}))")
    reasons = _attack(monkeypatch, tmp_path, staging, items, script)
    _refused(reasons, items, "the rebuild gave no results", taken=True)


def test_a_failed_pod_refuses_the_batch_even_with_a_copy_and_a_result(monkeypatch, tmp_path, platform):
    staging, items, _ = platform
    script = ("open(items[0][1], 'wb').write(open(items[0][0], 'rb').read())\n"
              "print('PDS-REBUILD-RESULT ' + json.dumps({items[0][2]: None}), flush=True)\n"
              "raise MemoryError('as if the kernel had stopped it')")
    reasons = _attack(monkeypatch, tmp_path, staging, items, script)
    _refused(reasons, items, "the rebuild stopped (exit 1, MemoryError)")


def test_the_pod_sees_its_files_only(tmp_path, platform):
    """What a file that took over a parser reaches from the Job's pod: its own copy, and nothing else
    of the staging claim (another project's staged file, the other work folders), no writing beside
    its input, no network, no root."""
    staging, items, other = platform
    runner = RebuildJob(PROJECT, staging, CFG)
    prepared = runner.prepare(items, 1 << 30, 60)
    neighbour = runner.prepare(items, 1 << 30, 60)  # another submission's work folder, on the same claim
    probe = _ITEMS + f"""import socket
found = {{"own file": open(items[0][0], "rb").read(4) == b"PAR1"}}
for what, path in {{"another project's staged file": {str(other)!r}, "another work folder":
                    {str(neighbour.work / 'in' / ITEMS)!r}, "the claim by a relative path": {str(IN_DIR)!r} + "/../../" + {str(other.relative_to(staging))!r}}}.items():
    try:
        open(path, "rb").read(1)
        found[what] = True
    except OSError:
        found[what] = False
try:
    open({str(IN_DIR / 'planted')!r}, "w").write("x")
    found["write beside its input"] = True
except OSError:
    found["write beside its input"] = False
s = socket.socket()
s.settimeout(2)
try:
    s.connect(("192.0.2.1", 80))
    found["network"] = True
except OSError:
    found["network"] = False
found["uid 0"] = os.getuid() == 0
print("PROBE " + json.dumps(found))
"""
    try:
        done = run_in_pod(staging, prepared.manifest, tmp_path / "scratch", ["-c", probe])
    finally:
        runner.finish(prepared)
        runner.finish(neighbour)
    assert done.returncode == 0, done.stderr[-2000:]
    found = json.loads(next(line for line in done.stdout.splitlines() if line.startswith("PROBE "))[6:])
    assert found == {"own file": True, "another project's staged file": False, "another work folder": False,
                     "the claim by a relative path": False, "write beside its input": False, "network": False,
                     "uid 0": False}
    assert not prepared.work.exists() and not neighbour.work.exists()


def test_the_gate_removes_folders_the_child_locked(tmp_path, platform):
    """The child runs as the gate's uid: folders it leaves without permissions in out/ are opened up
    and removed (run as that uid, without privileges, as the gate's pod runs)."""
    staging, items, _ = platform
    runner = RebuildJob(PROJECT, staging, CFG)
    prepared = runner.prepare(items, 1 << 30, 60)
    locked = prepared.work / "out" / "a" / "b"
    locked.mkdir(parents=True)
    (locked / "kept").write_bytes(b"x")
    os.symlink(staging / PROJECT, prepared.work / "out" / "link")  # never followed
    before = (staging / PROJECT).stat().st_mode
    for folder in (locked, locked.parent):
        folder.chmod(0)
    from tests.k8s.test_model_check_job import pod_argv

    script = ("import sys; from pathlib import Path; sys.path.insert(0, sys.argv[1]); "
              "from pds_kernel.airlock.rebuild_job import remove_work; remove_work(Path(sys.argv[2]))")
    done = subprocess.run(pod_argv([(staging, str(staging), False)], {}, 1000, 100)
                          + [sys.executable, "-c", script, str(REPO), str(prepared.work)],
                          capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stderr[-2000:]
    assert not prepared.work.exists()
    assert (staging / PROJECT).stat().st_mode == before  # the link's target untouched


def test_a_refused_or_failed_preparation_leaves_no_work_folder(tmp_path, platform):
    staging, items, _ = platform
    runner = RebuildJob(PROJECT, staging, CFG)
    with pytest.raises(OSError):
        runner.prepare([(staging / "missing.parquet", items[0][1], "t.parquet")], 1 << 30, 60)
    assert not list((staging / WORK_ROOT).iterdir())
    remove_work(staging / WORK_ROOT / "never-made")  # nothing to remove: no error
