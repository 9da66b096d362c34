"""Red team 20G: files, notebooks and packages on the way in, past the review, the scan or into another
project. Files uploaded to the real gate over HTTP and scanned by the
real ClamAV with the tests' own signatures (tests/security/imports_support.py), and wheels approved
from a real upstream index by real ``pip download`` (tests/security/redteam11_packages_support.py).

Tried, as a researcher: two files of one import whose names differ only by case (one name on a
case-insensitive volume), an import into another project, a file form field given twice, another
project's people reading an import's name and justification, files named like the platform's own
(``MANIFEST.json``, ``sitecustomize.py``, ``kernel.json``) and an archive of start-up files
released into the mounted folder. As an outside party whose file is imported: the tests' signature
in a notebook's base64 output (alone, zipped, in a cell attachment), in a PNG's compressed text chunk
and in its pixels, in a PDF's compressed stream, a bzip2 ZIP member and a Parquet column; a notebook
output named PNG that is an executable; member names equal once Unicode compatibility forms are set
aside, and member names longer than a file system takes. As someone who wants a package in: the
same release served again under another file name (a build tag, a spelling) after its approval, and
a wheel that installs Jupyter configuration or a kernelspec. And a control: a real notebook and
figure still come in.

Got through before this round's fixes: the signature in a notebook's base64 output (3 ways), in a
PNG's compressed text chunk and in its pixels, a notebook's "image/png" output that was an ELF
(:mod:`pds_kernel.airlock.import_decode`); two files of one import whose names differ by case;
members equal under NFKC; member names longer than 255 bytes; a release served under a second file
name after its approval (2 ways: :meth:`pds_kernel.packages.wheelhouse.Wheelhouse.add`); Jupyter
configuration and kernelspecs installed by a wheel, not named in the approval
(:func:`pds_kernel.packages.wheelcheck.startup_hooks`).
"""

from __future__ import annotations

import base64
import hashlib
import io
import json
import shutil
import struct
import zipfile
import zlib
from pathlib import Path

import polars as pl
import pytest
import redteam11_packages_support as support
from imports_support import (  # noqa: F401  (fixtures)
    MARKER,
    PROJECT,
    assert_refused,
    gate_registry_fixture,
    import_gate_fixture,
    settings_fixture,
    tar_of,
    zip_of,
)
from redteam11_packages_support import members, wheel_name, write_wheel

from pds_kernel.packages.service import PackageRefused

pytestmark = pytest.mark.skipif(shutil.which("clamscan") is None, reason="ClamAV is not installed")

world = support.world
hostile = support.hostile
ELF = Path("/bin/true").read_bytes()[:8192]


def approvals(created: dict) -> dict:
    return {"verdicts": {str(f["index"]): {"decision": "approve", "sha256": f["sha256"]} for f in created["files"]}}


def upload_many(gate, user: str, files: list[tuple[str, bytes]], **data):
    form = {"project": PROJECT, "justification": "bring this in", "kind": "files", **data}
    return gate.api(user, "POST", "imports", data=form,
                    files=[("files", (n, c, "application/octet-stream")) for n, c in files])


def release(gate, created: dict) -> str:
    rid = created["id"]
    for checker in ("olga", "omar"):
        view = gate.api(checker, "GET", f"requests/{rid}").json()
        assert gate.api(checker, "POST", f"requests/{rid}/reviews", json=approvals(view)).status_code == 200
    assert gate.api("omar", "POST", f"requests/{rid}/release", json={}).status_code == 200
    return rid


# ---- what ClamAV reads is not what the workspace decodes ------------------------------------------
def notebook(outputs: list[dict], attachments: dict | None = None) -> bytes:
    cells = [{"cell_type": "code", "source": "plot()", "metadata": {}, "execution_count": 1, "outputs": outputs}]
    if attachments:
        cells.append({"cell_type": "markdown", "source": "![x](attachment:x.png)", "metadata": {},
                      "attachments": attachments})
    return json.dumps({"cells": cells, "metadata": {}, "nbformat": 4, "nbformat_minor": 5}).encode()


def png(*chunks: tuple[bytes, bytes], width: int = 1, pixels: bytes = b"\x00\x00") -> bytes:
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
    head = chunk(b"IHDR", struct.pack(">IIBBBBB", width, 1, 8, 0, 0, 0, 0))
    return (b"\x89PNG\r\n\x1a\n" + head + b"".join(chunk(k, d) for k, d in chunks)
            + chunk(b"IDAT", zlib.compress(pixels)) + chunk(b"IEND", b""))


PLOT = png()
B64_MARKED_PNG = base64.b64encode(PLOT + MARKER).decode()
MARKED_NOTEBOOK = notebook([{"output_type": "display_data", "metadata": {},
                             "data": {"image/png": B64_MARKED_PNG, "text/plain": "<Figure>"}}])


def test_signature_in_a_notebooks_base64_output(import_gate):
    """A checker reads a notebook's code, not the base64 of its figures; ClamAV reads neither as
    what it is. Got through before its fix."""
    assert_refused(import_gate.upload("alice", "analysis.ipynb", MARKED_NOTEBOOK), "malware scan found", import_gate)


@pytest.mark.parametrize("archive", ["zip", "tar.gz"])
def test_signature_in_a_notebooks_base64_output_inside_an_archive(import_gate, archive):
    """The same notebook as a member of an archive. Got through before its fix."""
    members_ = (("README.md", b"# notebooks\n"), ("nb/analysis.ipynb", MARKED_NOTEBOOK))
    data = zip_of(*members_) if archive == "zip" else tar_of(*members_, compression="gz")
    assert_refused(import_gate.upload("alice", f"notebooks.{archive}", data), "malware scan found", import_gate)


def test_signature_in_a_notebook_cell_attachment(import_gate):
    """A markdown cell's attachment (base64 too). Got through before its fix."""
    data = notebook([], attachments={"x.png": {"image/png": B64_MARKED_PNG}})
    assert_refused(import_gate.upload("alice", "analysis.ipynb", data), "malware scan found", import_gate)


def test_notebook_output_named_png_that_is_an_executable(import_gate):
    """An "image/png" output whose bytes are an ELF: the same ELF uploaded as ``plot.png`` is
    refused. Got through before its fix."""
    data = notebook([{"output_type": "display_data", "metadata": {},
                      "data": {"image/png": base64.b64encode(ELF).decode()}}])
    assert_refused(import_gate.upload("alice", "analysis.ipynb", data), "is not PNG", import_gate)


def test_signature_in_a_png_compressed_text_chunk(import_gate):
    """A zTXt chunk is deflated: ClamAV does not inflate it, PIL does. Got through before its fix."""
    data = png((b"zTXt", b"Comment\x00\x00" + zlib.compress(MARKER)))
    assert_refused(import_gate.upload("alice", "plot.png", data), "malware scan found", import_gate)


def test_signature_in_a_png_s_pixels(import_gate):
    """One grey row of ``len(MARKER)`` pixels whose values are the signature, deflated in IDAT.
    Got through before its fix."""
    data = png(width=len(MARKER), pixels=b"\x00" + MARKER)
    assert_refused(import_gate.upload("alice", "plot.png", data), "malware scan found", import_gate)


def test_a_real_notebook_and_figure_still_come_in(import_gate):
    """Control: a matplotlib figure as a PNG file and as a notebook's output (with its text and SVG
    outputs) and a markdown attachment, zipped too: accepted, no false alarm from the decoding."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot

    figure = io.BytesIO()
    pyplot.figure(figsize=(2, 2))
    pyplot.plot([1, 3, 2])
    pyplot.savefig(figure, format="png")
    pyplot.close("all")
    encoded = base64.encodebytes(figure.getvalue()).decode()
    data = notebook([{"output_type": "display_data", "metadata": {},
                      "data": {"image/png": encoded, "text/plain": "<Figure>", "image/svg+xml": "<svg/>"}}],
                    attachments={"x.png": {"image/png": encoded}})
    answer = upload_many(import_gate, "alice", [("plot.png", figure.getvalue()), ("analysis.ipynb", data),
                                                ("notebooks.zip", zip_of(("analysis.ipynb", data)))])
    assert answer.status_code == 201, answer.text[:300]


def test_signature_in_a_pdf_compressed_stream(import_gate):
    """Refused before (ClamAV inflates PDF streams): a regression test."""
    stream = zlib.compress(MARKER * 3)
    data = (b"%PDF-1.4\n1 0 obj\n<< /Length " + str(len(stream)).encode() + b" /Filter /FlateDecode >>\nstream\n"
            + stream + b"\nendstream\nendobj\ntrailer\n<< >>\n%%EOF\n")
    assert_refused(import_gate.upload("alice", "paper.pdf", data), "malware scan found", import_gate)


def test_signature_in_a_bzip2_zip_member(import_gate):
    """Refused before (ClamAV unpacks bzip2 members): a regression test."""
    data = zip_of(("src/payload.py", b"# " + MARKER), compression=zipfile.ZIP_BZIP2)
    assert_refused(import_gate.upload("alice", "repo.zip", data), "malware scan found", import_gate)


@pytest.mark.parametrize("compression", ["zstd", "snappy", "gzip"])
def test_signature_in_a_parquet_column(import_gate, compression):
    """The signature as the values of a compressed Parquet column: refused before (ClamAV finds it in
    the column's pages), a regression test."""
    buffer = io.BytesIO()
    pl.DataFrame({"note": [MARKER.decode()] * 20}).write_parquet(buffer, compression=compression)
    assert_refused(import_gate.upload("alice", "table.parquet", buffer.getvalue()), "malware scan found", import_gate)


# ---- names ------------------------------------------------------------------------------------------
def test_two_files_of_one_import_whose_names_differ_by_case(import_gate):
    """``Tool.py`` and ``tool.py``: on a case-insensitive volume (an SMB share as the imports
    volume) the release writes one over the other, and the workspace runs bytes filed under the
    other's hash. Got through before its fix."""
    answer = upload_many(import_gate, "alice", [("Tool.py", b"print(1)\n"), ("tool.py", b"print(2)\n")])
    assert answer.status_code == 400, answer.text
    assert "differ only by case" in answer.json()["error"]
    assert not import_gate.staged_anything()


def test_members_equal_once_compatibility_forms_are_set_aside(import_gate):
    """``ﬁle.py`` (a ligature) and ``file.py``, ``ｒun.py`` (full width) and ``run.py``: the
    checker reads two names that look alike and a file system that folds compatibility forms keeps
    one. Got through before its fix."""
    data = zip_of(("src/\ufb01le.py", b"print(1)\n"), ("src/file.py", b"print(2)\n"))
    assert_refused(import_gate.upload("alice", "repo.zip", data), "have the same name", import_gate)
    data = tar_of(("\uff52un.py", b"print(1)\n"), ("run.py", b"print(2)\n"))
    assert_refused(import_gate.upload("alice", "repo.tar", data), "have the same name", import_gate)


def test_member_name_longer_than_a_file_system_takes(import_gate):
    """A 300-byte name: extraction in the workspace fails on it (or a tool shortens it to another
    name than the checker read). Got through before its fix."""
    data = zip_of(("README.md", b"# x\n"), ("src/" + "a" * 300 + ".py", b"print(1)\n"))
    assert_refused(import_gate.upload("alice", "repo.zip", data), "longer than", import_gate)


def test_upload_names_outside_ascii_are_refused(import_gate):
    """An NFD and an NFC spelling of ``café.py`` in one import: refused before, names are ASCII."""
    answer = upload_many(import_gate, "alice", [("cafe\u0301.py", b"print(1)\n"), ("caf\u00e9.py", b"print(2)\n")])
    assert answer.status_code == 400 and not import_gate.staged_anything()


# ---- another project, and data out -------------------------------------------------------------------
def test_import_into_another_project(import_gate):
    """alice names ``other-2024`` (not hers), then gives the project field twice: nothing is ever
    staged or requested in other-2024."""
    assert import_gate.upload("alice", "tool.py", b"print(1)\n", project="other-2024").status_code == 403
    answer = import_gate.api("alice", "POST", "imports",
                             data=[("project", PROJECT), ("project", "other-2024"), ("justification", "x"),
                                   ("kind", "files")],
                             files=[("files", ("tool.py", b"print(1)\n", "application/octet-stream"))])
    staging = import_gate.service.settings.paths.staging
    assert not any(p.is_file() for p in (staging / "other-2024").rglob("*"))
    assert import_gate.service.list_requests("oscar", scope="all") == []
    if answer.status_code == 201:
        assert answer.json()["project"] == PROJECT


def test_an_imports_name_and_justification_stay_in_the_project(import_gate):
    """alice writes workspace numbers into an import's justification and file name: mallory and
    oscar (another project) neither list, read nor download it."""
    created = import_gate.api("alice", "POST", "imports", data={
        "project": PROJECT, "justification": "cohort n=4127, 37 deaths", "kind": "files"},
        files=[("files", ("n4127-deaths37.py", b"print(1)\n", "application/octet-stream"))]).json()
    rid = created["id"]
    for outsider in ("mallory", "oscar"):
        assert import_gate.api(outsider, "GET", f"requests/{rid}").status_code in (403, 404)
        assert import_gate.api(outsider, "GET", f"requests/{rid}/files/0").status_code in (403, 404)
        listing = import_gate.api(outsider, "GET", "requests?scope=all")
        assert b"4127" not in listing.content and rid.encode() not in listing.content


@pytest.mark.parametrize("name", ["MANIFEST.json", "sitecustomize.py", "kernel.json"])
def test_a_file_named_like_the_platforms_own_stays_in_its_folder(import_gate, name):
    """Released, a file named ``MANIFEST.json`` (the project's manifest), ``sitecustomize.py`` or
    ``kernel.json`` lands in ``/imports/<request>/`` only: the manifest stays the platform's."""
    rid = release(import_gate, import_gate.upload("alice", name, b'{"argv": ["sh"]}\n').json())
    folder = import_gate.service.settings.paths.imports / PROJECT
    assert (folder / rid / name).read_bytes() == b'{"argv": ["sh"]}\n'
    assert {p.name for p in folder.iterdir()} == {"MANIFEST.json", rid}
    manifest = json.loads((folder / "MANIFEST.json").read_text())
    assert manifest["project"] == PROJECT and [e["id"] for e in manifest["imports"]] == [rid]


def test_an_archive_of_startup_files_is_not_unpacked_on_release(import_gate):
    """``.ipython/.../startup/00.py``, a ``.pth``, a Jupyter server config: an archive is released as
    one file, unpacked by nobody but the researcher who reads its listing."""
    data = zip_of((".ipython/profile_default/startup/00-run.py", b"print(1)\n"), ("lib/x.pth", b"import os\n"),
                  (".jupyter/jupyter_server_config.py", b"c = 1\n"))
    rid = release(import_gate, import_gate.upload("alice", "dotfiles.zip", data).json())
    folder = import_gate.service.settings.paths.imports / PROJECT
    assert {str(p.relative_to(folder)) for p in folder.rglob("*")} == {"MANIFEST.json", rid, f"{rid}/dotfiles.zip"}


# ---- packages ------------------------------------------------------------------------------------------
@pytest.mark.parametrize("second", ["pds_later-1.0-1-py3-none-any.whl", "PDS_Later-1.0-py3-none-any.whl"],
                         ids=["build-tag", "spelling"])
def test_an_approved_release_served_again_under_another_file_name(hostile, tmp_path, second):
    """After ``pds-later==1.0`` is approved, upstream adds a file of the same release under another
    name (a build tag, which pip prefers; another spelling). The next approval that brings
    ``pds-later==1.0`` served both files, pip installed the new bytes nobody reviewed. Got through
    before its fix: now refused and audited, the approved bytes stay the only ones served."""
    hostile.publish(write_wheel(tmp_path / "v1" / wheel_name("pds-later", "1.0"), members("pds-later", "1.0")))
    (approved,) = hostile.approve("pds-later==1.0")
    hostile.publish(write_wheel(tmp_path / "v2" / second, members("pds-later", "1.0", b"VALUE = 'swapped'\n")))
    hostile.publish(write_wheel(tmp_path / wheel_name("pds-app", "1.0"),
                                members("pds-app", "1.0", metadata=("Requires-Dist: pds-later==1.0",))))
    with pytest.raises(PackageRefused, match="already approved with other files"):
        hostile.approve("pds-app==1.0")
    served = hostile.served()
    assert [e["file"] for e in served["pds-later"]] == [approved.file] and "pds-app" not in served
    files = hostile.runtime.settings.paths.packages / "files"
    assert sorted(p.name for p in files.iterdir()) == [approved.file]
    assert hashlib.sha256((files / approved.file).read_bytes()).hexdigest() == approved.sha256
    assert hostile.denied("pds-app==1.0")


def test_a_wheel_installing_jupyter_configuration_is_named_in_the_approval(hostile, tmp_path):
    """``.data/data/etc/jupyter/jupyter_server_config.d/x.json`` (loads a server extension at the
    next start) and ``.data/data/share/jupyter/kernels/python3/kernel.json`` (shadows the
    platform's kernel): real extensions ship such files, so they are not refused, but the
    approval's audit entry did not name them among what runs without an import. Got through
    before its fix."""
    data = "pds_jup-1.0.data/data"
    files = members("pds-jup", "1.0", extra=(
        (f"{data}/etc/jupyter/jupyter_server_config.d/pds_jup.json", b'{"ServerApp": {}}\n'),
        (f"{data}/share/jupyter/kernels/python3/kernel.json", b'{"argv": ["sh"]}\n')))
    hostile.publish(write_wheel(tmp_path / wheel_name("pds-jup", "1.0"), files))
    hostile.approve("pds-jup==1.0")
    (entry,) = [e for e in hostile.runtime.audit.entries(action="packages.approve") if e.outcome != "denied"]
    hooks = " ".join(entry.details["files"][0]["runs_without_import"])
    assert "jupyter_server_config.d/pds_jup.json" in hooks and "kernels/python3/kernel.json" in hooks
