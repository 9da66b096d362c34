"""Attacks on the staging claim through the cohort-link Job's output (pds_kernel.airlock.cohort_link_job).

The linker parses a list a researcher uploaded: a flaw of its CSV or Parquet readers exploited by
the list runs code as the linker. Here the linker is replaced by such code (``python -c``), run as
the Job's init container in an emulated pod (bubblewrap: the manifest's mounts at their paths,
read-only where it says, its uid, no network; tests/security/cohort_link_k8s_support.py), and the
Job's second container, the gate's own copy (:func:`pds_kernel.airlock.rebuild_collect.copy_out`),
then runs as the kubelet runs it. The staging claim holds every project's staged files: whatever the
linker writes, only ``cohort.csv`` and ``match_report.json``, regular files, within the gate's
bound, may reach the request's ``link/`` on it, and nothing else of the claim changes.

Before: ``link/`` of the claim was the linker's own writable mount: each of these wrote straight
onto the claim (the gate refused the import afterwards, but the bytes, files and links were there).
"""

from __future__ import annotations

import os
from pathlib import Path

import cohort_link_k8s_support as pod
import pytest

from pds_kernel.airlock import cohort_link
from pds_kernel.airlock.cohort_link_job import LIST_PATH, OUT_DIR
from pds_kernel.airlock.rebuild_collect import collect_container, copy_out
from pds_kernel.errors import IntegrityError, InvalidInput

needs_bwrap = pytest.mark.skipif(not pod.bwrap_available(), reason="bubblewrap (user namespaces) emulates the pod")
#: the bound the attacks' Jobs get (the gate's is 8 times the list, 64 KiB and the report)
BOUND = 256 * 1024


@pytest.fixture(scope="module")
def platform(tmp_path_factory):
    return pod.make_platform(tmp_path_factory.mktemp("link-output"))


_counter = iter(range(10_000))


def _claim_state(staging: Path) -> dict[str, tuple[int, int]]:
    """Every entry of the staging claim but the requests' ``link/`` folders: (mode, size)."""
    state = {}
    for path in sorted(staging.rglob("*")):
        if "link" not in path.relative_to(staging).parts[2:3]:
            info = path.lstat()
            state[str(path.relative_to(staging))] = (info.st_mode, info.st_size)
    return state


def _hostile_link(platform, tmp_path, script: str) -> tuple[Path, object]:
    """The Job of a fresh request, its linker being ``script`` (run with ``OUT`` its output folder):
    (the request's ``link/`` on the claim once the pod ended, the pod's run). Nothing of the claim
    outside ``link/`` may have changed."""
    settings, cohort = platform
    request = f"{next(_counter) + 0xa000:032x}"
    directory = pod.stage(settings, request, cohort.path.read_bytes())
    out = pod.prepare_output(directory)
    before = _claim_state(settings.paths.staging)
    prelude = f"import os\nOUT = {str(OUT_DIR)!r}\nLIST = {str(LIST_PATH)!r}\n"
    done = pod.run_in_pod(settings, pod.link_job(request, max_output_bytes=BOUND, settings=settings), tmp_path / "scratch",
                      argv_tail=["-c", prelude + script])
    assert _claim_state(settings.paths.staging) == before
    return out, done


def _within_bound(out: Path) -> list[str]:
    names = sorted(os.listdir(out))
    assert set(names) <= {"cohort.csv", "match_report.json"}
    assert sum(os.lstat(out / n).st_size for n in names) <= BOUND
    assert all(os.path.isfile(out / n) and not os.path.islink(out / n) for n in names)
    return names


@needs_bwrap
def test_linker_writing_far_more_than_the_bound(platform, tmp_path):
    """A cohort.csv of 4 times the bound: it stays in the pod; nothing of it reaches the claim."""
    out, done = _hostile_link(platform, tmp_path, f"""
with open(os.path.join(OUT, "match_report.json"), "w") as f: f.write("{{}}")
with open(os.path.join(OUT, "cohort.csv"), "wb") as f:
    for _ in range(4): f.write(b"x" * {BOUND})
""")
    assert done.returncode == 0, done.stderr
    assert _within_bound(out) == ["match_report.json"]
    with pytest.raises(IntegrityError, match="holds"):  # and the gate refuses the import
        cohort_link.read_output(out, {}, [], BOUND)


@needs_bwrap
def test_linker_writing_other_files_folders_and_hidden_files(platform, tmp_path):
    out, done = _hostile_link(platform, tmp_path, """
for name in ("evil.bin", ".hidden", "cohort.csv.1", "MATCH_REPORT.JSON"):
    with open(os.path.join(OUT, name), "w") as f: f.write("planted")
os.makedirs(os.path.join(OUT, "sub", "deeper"))
with open(os.path.join(OUT, "sub", "deeper", "cohort.csv"), "w") as f: f.write("planted")
with open(os.path.join(OUT, "cohort.csv"), "w") as f: f.write("PERSON_ID\\n")
""")
    assert done.returncode == 0, done.stderr
    assert _within_bound(out) == ["cohort.csv"]
    assert (out / "cohort.csv").read_text() == "PERSON_ID\n"


@needs_bwrap
@pytest.mark.parametrize("target", ["/etc/passwd", str(LIST_PATH), "../../raw/" + pod.STORED, "/srv/pds/cohort-link/copies"])
def test_linker_output_as_links(platform, tmp_path, target):
    """The expected names made links (to a host file, to the staged list, up the claim, to the copy's
    own destination): no link is followed, none reaches the claim."""
    out, done = _hostile_link(platform, tmp_path, f"""
os.symlink({target!r}, os.path.join(OUT, "cohort.csv"))
os.symlink({target!r}, os.path.join(OUT, "match_report.json"))
""")
    assert done.returncode == 0, done.stderr
    assert _within_bound(out) == []


@needs_bwrap
def test_linker_output_as_a_fifo_and_a_folder(platform, tmp_path):
    """A FIFO (a copy that would wait for ever) and a folder under the expected names: skipped."""
    out, done = _hostile_link(platform, tmp_path, """
os.mkfifo(os.path.join(OUT, "cohort.csv"))
os.makedirs(os.path.join(OUT, "match_report.json", "x"))
""")
    assert done.returncode == 0, done.stderr
    assert _within_bound(out) == []


@needs_bwrap
def test_linker_writing_on_the_staging_claim_directly(platform, tmp_path):
    """The claim's list is the linker's only view of it, read-only; the copy's mount is not in its pod's
    container: every write fails, nothing of the claim changes."""
    out, done = _hostile_link(platform, tmp_path, """
import errno
tried = []
for path in (LIST, os.path.join(os.path.dirname(LIST), "planted"), "/srv/pds/cohort-link/copies/cohort.csv",
             "/data/planted", "/srv/pds/key-store/keys/planted"):
    try:
        with open(path, "a") as f: f.write("planted")
        tried.append((path, "written"))
    except OSError as exc:
        tried.append((path, errno.errorcode[exc.errno]))
print(tried)
assert not [t for t in tried if t[1] == "written"], tried
""")
    assert done.returncode == 0, done.stdout + done.stderr
    assert _within_bound(out) == []


# ---- the copy step itself, run on folders -----------------------------------------------------------
@pytest.mark.parametrize("names", [["../cohort.csv"], [".."], ["sub/cohort.csv"], ["/etc/passwd"], [""]])
def test_a_copy_of_a_path_is_never_made(tmp_path, names):
    """The Job's manifest never names a path (refused when built), and the copy skips one all the same."""
    with pytest.raises(ValueError, match="not a path"):
        collect_container("img", "IfNotPresent", source=Path("/a"), dest=Path("/b"), dest_path="p/r/link",
                          names=names, max_bytes=BOUND)
    source, dest = tmp_path / "out", tmp_path / "claim" / "p" / "r" / "link"
    (source / "sub").mkdir(parents=True)
    dest.mkdir(parents=True)
    for planted in (tmp_path / "cohort.csv", source / "sub" / "cohort.csv"):
        planted.write_text("planted")
    copy_out(source, dest, names, BOUND)
    assert list(dest.iterdir()) == [] and sorted(p.name for p in (tmp_path / "claim" / "p" / "r").iterdir()) == ["link"]


def test_the_bound_is_for_all_files_together(tmp_path):
    """Two files each under the bound, together over it: the second is not copied."""
    source, dest = tmp_path / "out", tmp_path / "link"
    source.mkdir()
    dest.mkdir()
    (source / "match_report.json").write_bytes(b"r" * 4096)
    (source / "cohort.csv").write_bytes(b"c" * (BOUND - 100))
    copy_out(source, dest, ["match_report.json", "cohort.csv"], BOUND)
    assert [p.name for p in dest.iterdir()] == ["match_report.json"]


def test_a_job_with_an_unbounded_output_is_never_made():
    for bound in (0, -1, 1 << 41):
        with pytest.raises(InvalidInput, match="bounded"):
            pod.link_job("f" * 32, raw=f"{pod.PROJECT}/{'f' * 32}/raw/{pod.STORED}", max_output_bytes=bound)
