"""The gate releases copies rebuilt from cells and pixels (docs/adr/0010-release-rebuilt-copies.md).

Every crafted file of the hidden-channel attacks (tests/security/test_disclosure_hidden_channels.py
and test_disclosure_crafted.py), including the channels the ``embedded-data`` checks leave open,
is rebuilt here: its rebuilt copy must be byte for byte the rebuilt copy of the same file without
the payload (the payload has no influence on what would leave), or the gate refuses the file.
Then the attacks on the rebuild itself, and the whole path through the gate's real service: what
the checkers see and what the release writes are the rebuilt bytes, never the submitted ones.
"""

from __future__ import annotations

import hashlib
import io
import math
import re
import struct
import zipfile
import zlib

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from disclosure_support import PROJECT, build_service, check
from PIL import Image
from test_disclosure_crafted import WORKBOOK_ATTACKS, _xlsx_edited
from test_disclosure_hidden_channels import (
    FIGURES,
    FRAME,
    HIDDEN,
    OPEN,
    PARQUET,
    _chunk,
    _jpeg,
    _parquet,
    _pdf,
    _png,
)

from pds_kernel.airlock.rebuild import MAX_PIXELS, rebuild, submitted_path
from pds_kernel.airlock.staging import RefusedFiles
from pds_kernel.errors import InvalidInput

pytestmark = pytest.mark.slow

DECLARED = {"labels": ["region"], "counts": ["persons"]}
PLAIN = {"t.parquet": _parquet, "fig.png": _png, "fig.jpg": _jpeg, "fig.pdf": _pdf,
         "t.xlsx": lambda: _xlsx_edited(lambda name, data: [(name, data)])}


def _rebuilt(tmp_path, name: str, data: bytes, tag: str) -> bytes | None:
    """The rebuilt copy of ``data`` submitted as ``name``, or None when the gate refuses to rebuild it."""
    source, target = tmp_path / f"{tag}-in-{name}", tmp_path / f"{tag}-out-{name}"
    source.write_bytes(data)
    try:
        rebuild(source, target, name)
    except InvalidInput:
        assert not target.exists()  # a refused rebuild leaves nothing to release
        return None
    return target.read_bytes()


ATTACKS = {f"parquet: {k}": ("t.parquet", v) for k, v in PARQUET.items()}
ATTACKS.update(FIGURES)
ATTACKS.update({k: (name, data) for k, (name, data, _) in OPEN.items()})
ATTACKS.update({f"xlsx: {k}": ("t.xlsx", lambda change=change: _xlsx_edited(change))
                for k, change in WORKBOOK_ATTACKS.items()})
#: attacks whose payload makes the image unreadable to Pillow: the gate refuses them (nothing leaves)
REFUSED = {"jpeg: rows in a quantisation table replaced later", "jpeg: rows in a JPG0 segment",
           "png: rows in a second frame (APNG)", "png: rows in an eXIf chunk"}


@pytest.mark.parametrize("attack", sorted(ATTACKS))
def test_the_payload_does_not_reach_the_rebuilt_copy(tmp_path, attack):
    name, data = ATTACKS[attack]
    plain = _rebuilt(tmp_path, name, PLAIN[name](), "plain")
    assert plain is not None
    crafted = _rebuilt(tmp_path, name, data(), "crafted")
    if attack in REFUSED:
        assert crafted is None
    else:
        assert crafted == plain, "the rebuilt copy depends on bytes a reader does not see"


@pytest.mark.parametrize("attack", sorted(OPEN))
def test_channels_the_checks_leave_open_are_closed_by_the_rebuild(tmp_path, attack):
    """What passes ``embedded-data`` (test_channels_left_open) leaves without the payload."""
    name, data, _ = OPEN[attack]
    crafted = _rebuilt(tmp_path, name, data(), "crafted")
    assert crafted is not None and HIDDEN not in crafted and zlib.compress(HIDDEN) not in crafted
    assert crafted == _rebuilt(tmp_path, name, PLAIN[name](), "plain")


# ---- attacks on the rebuild itself -----------------------------------------------------------
def test_unused_dictionary_entries_of_a_parquet_column_do_not_leave(tmp_path):
    """A dictionary column can carry values no row uses: pandas shows its rows, not its categories."""
    frame = FRAME.assign(region=pd.Categorical(["N", "S"], categories=["N", "S", HIDDEN.decode()]))
    buffer = io.BytesIO()
    frame.to_parquet(buffer, index=False, compression=None)
    assert HIDDEN in buffer.getvalue()
    crafted = _rebuilt(tmp_path, "t.parquet", buffer.getvalue(), "crafted")
    assert crafted is not None and HIDDEN not in crafted
    assert pd.read_parquet(io.BytesIO(crafted)).astype({"region": object}).equals(FRAME)


def test_field_and_schema_metadata_of_a_parquet_file_do_not_leave(tmp_path):
    table = pa.Table.from_pandas(FRAME, preserve_index=False)
    fields = [table.schema.field(0).with_metadata({b"note": HIDDEN}), table.schema.field(1)]
    crafted = table.cast(pa.schema(fields, metadata={b"custom": HIDDEN}))
    buffer = io.BytesIO()
    pq.write_table(crafted, buffer)
    out = _rebuilt(tmp_path, "t.parquet", buffer.getvalue(), "crafted")
    assert out is not None and HIDDEN not in out
    schema = pq.read_schema(io.BytesIO(out))
    assert set(schema.metadata or {}) <= {b"ARROW:schema"} and all(f.metadata is None for f in schema)


def test_a_text_cell_that_looks_like_a_formula_stays_a_text(tmp_path):
    """A workbook's text ``=HYPERLINK(...)`` must not become a formula in the copy (openpyxl writes a
    text starting with ``=`` as a formula unless told otherwise)."""
    from openpyxl import Workbook

    book = Workbook()
    sheet = book.active
    sheet.append(["region", "persons"])
    cell = sheet.cell(row=2, column=1, value='=HYPERLINK("https://example.org/?x=1","N")')
    cell.data_type = "s"
    sheet.cell(row=2, column=2, value=120)
    buffer = io.BytesIO()
    book.save(buffer)
    out = _rebuilt(tmp_path, "t.xlsx", buffer.getvalue(), "crafted")
    with zipfile.ZipFile(io.BytesIO(out)) as archive:
        sheet_xml = archive.read("xl/worksheets/sheet1.xml")
    assert b"<f>" not in sheet_xml and b"HYPERLINK" in sheet_xml


def test_a_palette_entry_no_pixel_uses_does_not_leave(tmp_path):
    """A palette image's PLTE holds up to 768 bytes of colours chosen by the author: the copy is
    written from the pixels' colours, without a palette."""
    palette = [0, 0, 0, 255, 255, 255] + list(HIDDEN[:762])
    image = Image.new("P", (8, 8), 0)
    image.putpalette(palette)
    buffer = io.BytesIO()
    image.save(buffer, "PNG")
    assert HIDDEN[:100] in buffer.getvalue()
    out = _rebuilt(tmp_path, "fig.png", buffer.getvalue(), "crafted")
    assert out is not None and HIDDEN[:16] not in out
    assert Image.open(io.BytesIO(out)).mode in {"RGB", "RGBA"}


def test_the_low_byte_of_sixteen_bit_pixels_does_not_leave(tmp_path):
    """16 bits a pixel hide 8 bits no screen shows: the copy keeps the high byte (8-bit grey)."""
    high = np.full((16, 16), 0x7F00, dtype=np.uint16)
    payload = np.frombuffer(HIDDEN[:256], dtype=np.uint8).reshape(16, 16).astype(np.uint16)
    copies = []
    for pixels in (high, high | payload):
        buffer = io.BytesIO()
        Image.fromarray(pixels).save(buffer, "PNG")
        copies.append(_rebuilt(tmp_path, "fig.png", buffer.getvalue(), f"i16-{len(copies)}"))
    assert copies[0] is not None and copies[0] == copies[1]


def test_an_image_declaring_a_huge_size_is_refused_before_it_is_decoded(tmp_path):
    """A decompression bomb: a tiny file whose header declares 65,535 x 65,535 pixels."""
    rows = zlib.compress(b"\x00" * (1 + 65535), 9)
    data = (b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", struct.pack(">IIBBBBB", 65535, 65535, 8, 0, 0, 0, 0))
            + _chunk(b"IDAT", rows) + _chunk(b"IEND", b""))
    with pytest.raises(InvalidInput, match=str(MAX_PIXELS)):
        rebuild(_write(tmp_path / "bomb.png", data), tmp_path / "out.png", "bomb.png")
    assert not (tmp_path / "out.png").exists()


@pytest.mark.parametrize("name, data", [("t.parquet", b"PAR1" + b"\x00" * 64 + b"PAR1"),
                                        ("t.xlsx", b"PK\x03\x04" + b"\x00" * 64),
                                        ("fig.png", b"\x89PNG\r\n\x1a\n" + b"\x00" * 64),
                                        ("fig.jpg", b"\xff\xd8\xff" + b"\x00" * 64),
                                        ("fig.pdf", b"%PDF-1.4\n" + b"\x00" * 64)])
def test_a_broken_file_is_refused_with_a_reason(tmp_path, name, data):
    with pytest.raises(InvalidInput, match="the gate cannot rebuild it"):
        rebuild(_write(tmp_path / name, data), tmp_path / f"out-{name}", name)


def test_a_nested_parquet_column_is_refused(tmp_path):
    table = pa.table({"region": ["N"], "rows": [[1, 2, 3]]})
    buffer = io.BytesIO()
    pq.write_table(table, buffer)
    with pytest.raises(InvalidInput, match="not one value per cell"):
        rebuild(_write(tmp_path / "t.parquet", buffer.getvalue()), tmp_path / "out.parquet", "t.parquet")


def _write(path, data: bytes):
    path.write_bytes(data)
    return path


# ---- through the gate's real service -----------------------------------------------------------
def _open_channel(name: str) -> bytes:
    return next(data() for n, data, _ in OPEN.values() if n == name)


@pytest.mark.parametrize("name", ["t.parquet", "fig.jpg", "fig.pdf"])
def test_a_payload_the_checks_do_not_see_is_not_released(runtime, tmp_path, name):
    """A file hiding rows where the checks do not look passes them; the checkers approve what they
    see; the release writes the rebuilt copy, without the payload. The submitted bytes stay in the
    staging area and are never served."""
    service, _ = build_service(runtime)
    crafted = _open_channel(name)
    files = [(name, io.BytesIO(crafted))]
    if name.startswith("fig."):
        files.append(("fig.csv", io.BytesIO(b"region,persons\nN,120\nS,230\n")))
    view = service.create("alice", PROJECT, files, "results", context={"tables": {name: DECLARED}})
    staged = next(f for f in view.files if f.name == name)
    assert staged.sha256 != hashlib.sha256(crafted).hexdigest()
    assert "embedded-data" not in {x["rule"] for x in staged.check["findings"]}  # the checks missed it
    _, path = service.open_staged("olga", view.id, staged.index)
    assert HIDDEN not in path.read_bytes() and path.read_bytes() == _rebuilt(tmp_path, name, crafted, "x")
    assert submitted_path(path.parent, path.name).read_bytes() == crafted  # kept for the record
    verdicts = {f.index: {"decision": "approve", "comment": "ok"} for f in view.files}
    service.review("olga", view.id, verdicts)
    service.review("omar", view.id, verdicts)
    service.release("olga", view.id)
    _, released = service.download("alice", view.id, staged.index)
    assert released.read_bytes() == path.read_bytes() and HIDDEN not in released.read_bytes()


def test_a_payload_the_checks_find_is_named_and_still_left_out(runtime):
    """A file whose payload ``embedded-data`` finds fails, with the finding about the submitted bytes."""
    service, _ = build_service(runtime)
    crafted = PARQUET["a footer field no reader knows"]()
    view = service.create("alice", PROJECT, [("t.parquet", io.BytesIO(crafted))], "results",
                          context={"tables": {"t.parquet": DECLARED}})
    staged = service.get_request("olga", view.id).files[0]  # the checker's view: findings in full
    found = [x["message"] for x in staged.check["findings"] if x["rule"] == "embedded-data"]
    assert staged.check_status == "fail" and any(m.startswith("the submitted file:") for m in found), found
    _, path = service.open_staged("olga", view.id, 0)
    assert HIDDEN not in path.read_bytes()


def test_a_file_the_gate_cannot_rebuild_is_refused_and_nothing_is_staged(runtime):
    service, _ = build_service(runtime)
    with pytest.raises(RefusedFiles) as refused:
        service.create("alice", PROJECT, [("t.parquet", io.BytesIO(b"PAR1" + b"\x00" * 64 + b"PAR1"))], "results")
    assert "the gate cannot rebuild it" in refused.value.reasons["t.parquet"]
    staging = runtime.settings.paths.staging / PROJECT
    assert not staging.exists() or not any(p.is_file() for p in staging.rglob("*"))


def test_an_sdc_declaration_of_the_submitted_bytes_still_counts(runtime, tmp_path):
    """Declarations and ACRO records name the SHA-256 of what the researcher saved: the rebuilt copy
    holds the same cells, so they still count for it."""
    service, _ = build_service(runtime)
    data = _parquet()
    declared = {**DECLARED, "sha256": hashlib.sha256(data).hexdigest()}
    view = service.create("alice", PROJECT, [("t.parquet", io.BytesIO(data))], "results",
                          context={"tables": {"t.parquet": declared}})
    messages = [x["message"] for x in view.files[0].check["findings"]]
    assert not any("made for other bytes" in m for m in messages), messages
    assert view.files[0].check_status == "pass", messages
    assert check(tmp_path, "t.parquet", data, context={"tables": {"t.parquet": declared}}).verdict == "pass"


def test_the_local_check_judges_the_copy_the_gate_would_release(tmp_path):
    """``pds airlock check`` and ``ws.check`` give the verdict of submission: a file the gate cannot
    rebuild is refused, a payload the checks find in the submitted bytes is named."""
    from pds_kernel.airlock.checks import Thresholds
    from pds_kernel.airlock.gate import ProjectGate, check_paths

    broken = _write(tmp_path / "broken.parquet", b"PAR1" + b"\x00" * 64 + b"PAR1")
    hiding = _write(tmp_path / "hiding.parquet", PARQUET["a footer field no reader knows"]())
    plain = _write(tmp_path / "plain.parquet", _parquet())
    context = {"tables": {n: DECLARED for n in ("broken.parquet", "hiding.parquet", "plain.parquet")}}
    gate = ProjectGate(Thresholds(min_cell=10), 50 * 1024 * 1024)
    files = {f["name"]: f for f in check_paths(gate, [broken, hiding, plain], context)["files"]}
    assert files["broken.parquet"]["verdict"] == "refused"
    assert [x["rule"] for x in files["broken.parquet"]["findings"]] == ["rebuild"]
    assert files["hiding.parquet"]["verdict"] == "fail"
    assert any(x["message"].startswith("the submitted file:") for x in files["hiding.parquet"]["findings"])
    assert files["plain.parquet"]["verdict"] == "pass", files["plain.parquet"]["findings"]


def test_nan_payloads_and_extension_types_do_not_leave(tmp_path):
    """Room in a Parquet column's values and type that no reader shows: the payload bits of a NaN
    (every reader shows NaN), an extension type's name. (A time zone's name must be one of the tz
    database: test_release_rebuilt_attacks.py.)"""
    payload = struct.unpack("<d", struct.pack("<Q", 0x7FF8_DEAD_BEEF_0001))[0]
    plain = pa.table({"persons": pa.array([math.nan, 120.0]),
                      "when": pa.array([0, 1], pa.timestamp("us", tz="UTC")),
                      "code": pa.array([b"ab", b"cd"], pa.binary(2))})
    crafted = pa.table({"persons": pa.array([payload, 120.0]),
                        "when": pa.array([0, 1], pa.timestamp("us", tz="UTC")),
                        "code": pa.ExtensionArray.from_storage(
                            pa.opaque(pa.binary(2), HIDDEN.decode()[:200], "vendor"), plain["code"].chunk(0))})
    copies = []
    for table in (plain, crafted):
        buffer = io.BytesIO()
        pq.write_table(table, buffer)
        copies.append(_rebuilt(tmp_path, "t.parquet", buffer.getvalue(), f"t{len(copies)}"))
    assert copies[0] is not None and copies[0] == copies[1]


# ---- the child process the gate rebuilds in ------------------------------------------------------
def _big_png(path):
    """A 36-megapixel RGBA figure of one colour: a small file that decodes to ~140 MB of pixels."""
    Image.new("RGBA", (6000, 6000), (255, 255, 255, 255)).save(path, "PNG")
    return path


@pytest.mark.parametrize("files, limit, expected", [
    (["big.png"], {"memory_bytes": 512 * 1024**2}, "more memory than a rebuild may use"),
    (["big.png", "small.parquet"], {"cpu_seconds": 1}, "1 s of CPU"),
    # short of memory, pyarrow cannot start its threads and waits forever, using no CPU: any wall
    # limit ends it (8 s: the children of the other two cases finish in about 2)
    (["small.parquet"], {"memory_bytes": 512 * 1024**2, "wall_seconds": 8}, "512 MiB of memory"),
])
def test_a_rebuild_beyond_the_childs_limits_refuses_the_files_and_spares_the_gate(tmp_path, files, limit, expected):
    """The formats' bounds trust sizes a file declares; the child process's limits do not. A file
    that needs more memory, CPU or time than the child has is refused (with the others of its batch
    when the child dies), and the gate's own process never holds what it unpacks."""
    import resource
    import time

    from pds_kernel.airlock.rebuild import rebuild_all

    sources = {"big.png": lambda: _big_png(tmp_path / "big.png"),
               "small.parquet": lambda: _write(tmp_path / "small.parquet", _parquet())}
    items = [(sources[name](), tmp_path / f"out-{name}", name) for name in files]
    before, started = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss, time.monotonic()
    reasons = rebuild_all(items, **limit)
    assert time.monotonic() - started < limit.get("wall_seconds", 60) + 15
    assert set(reasons) == set(files) and all(why and expected in why for why in reasons.values()), reasons
    assert not any((tmp_path / f"out-{name}").exists() for name in files)
    assert resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before < 100 * 1024  # KiB: not in this process
    small = _write(tmp_path / "small.parquet", _parquet())
    assert rebuild_all([(small, tmp_path / "again.parquet", "small.parquet")]) == {"small.parquet": None}
    assert (tmp_path / "again.parquet").read_bytes() == _rebuilt(tmp_path, "t.parquet", _parquet(), "plain")


# ---- PDF figures: the pages drawn as pictures ----------------------------------------------------
def _matplotlib_pdf(pages: int = 1, size: tuple[float, float] = (6.4, 4.8), white_rows: bool = False) -> bytes:
    """A bar chart saved as a PDF by matplotlib; ``white_rows``: the person rows written on it in
    white, on white (a viewer shows nothing; a text extractor reads them)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.backends.backend_pdf import PdfPages

    buffer = io.BytesIO()
    with PdfPages(buffer, metadata={"CreationDate": None}) as document:
        for _ in range(pages):
            fig, ax = plt.subplots(figsize=size)
            ax.bar(["N", "S"], [120, 230])
            if white_rows:
                fig.text(0.01, 0.01, HIDDEN.decode(), color="white", fontsize=2)
            document.savefig(fig)
            plt.close(fig)
    return buffer.getvalue()


def test_rows_written_in_white_on_a_pdf_figure_do_not_leave(tmp_path):
    """Text a viewer does not show (white on white) is text to every extractor: the copy holds the
    pages' pictures only, the same as the figure's without the rows."""
    import pypdfium2 as pdfium

    crafted = _matplotlib_pdf(white_rows=True)
    document = pdfium.PdfDocument(crafted)
    assert "sex,year,zip,cost" in document[0].get_textpage().get_text_range()  # a text extractor reads them
    document.close()
    copy = _rebuilt(tmp_path, "fig.pdf", crafted, "crafted")
    assert copy is not None and copy == _rebuilt(tmp_path, "fig.pdf", _matplotlib_pdf(), "plain")
    assert b"/Font" not in copy and b"/Info" not in copy


def test_a_pdf_of_many_poster_pages_is_drawn_within_the_pixel_bound(tmp_path):
    from pds_kernel.airlock.rebuild_pdf import MAX_TOTAL_PIXELS

    copy = _rebuilt(tmp_path, "fig.pdf", _matplotlib_pdf(pages=4, size=(40, 40)), "posters")
    assert copy is not None
    sizes = [(int(w), int(h)) for w, h in re.findall(rb"/Width (\d+) /Height (\d+)", copy)]
    assert len(sizes) == 4 and sum(w * h for w, h in sizes) <= MAX_TOTAL_PIXELS


@pytest.mark.parametrize("pages, size, why", [(21, (2, 2), "pages: a figure has 1 to 20"),
                                              (1, (250, 2), "points: at most 14400 a side")])
def test_a_pdf_beyond_a_figures_bounds_is_refused(tmp_path, pages, size, why):
    with pytest.raises(InvalidInput, match=why):
        rebuild(_write(tmp_path / "fig.pdf", _matplotlib_pdf(pages=pages, size=size)), tmp_path / "out.pdf", "fig.pdf")
    assert not (tmp_path / "out.pdf").exists()


def test_the_rebuild_runs_under_a_lower_limit_the_gate_already_has(tmp_path):
    """In a workspace sandbox without control groups the process runs under its own address-space
    limit: ``pds airlock check`` there lowers its child's limits to it instead of failing to raise them."""
    import subprocess
    import sys

    script = ("import resource, sys; from pathlib import Path; "
              "resource.setrlimit(resource.RLIMIT_AS, (2 * 1024**3, 2 * 1024**3)); "
              "from pds_kernel.airlock.rebuild import MEMORY_BYTES, _within, rebuild_all; "
              "print(_within(resource.RLIMIT_AS, MEMORY_BYTES)); "
              "print(rebuild_all([(Path(sys.argv[1]), Path(sys.argv[2]), 't.parquet')]))")
    source = _write(tmp_path / "t.parquet", _parquet())
    done = subprocess.run([sys.executable, "-c", script, str(source), str(tmp_path / "out.parquet")],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    # the child's limit is the lower one (as root, raising it would even succeed: asserted here)
    assert done.stdout.splitlines() == [str((2 * 1024**3, 2 * 1024**3)), "{'t.parquet': None}"]


@pytest.mark.parametrize("ink", [254, 249])
def test_rows_written_a_shade_from_a_pngs_background_do_not_leave(tmp_path, ink):
    """Rows written in grey 254 (or 249) on a white figure: no screen shows them, a threshold reads
    them. The copy writes pixels that close to the background as the background."""
    from PIL import ImageDraw

    def figure(rows: bool) -> bytes:
        image = Image.new("RGB", (600, 200), "white")
        draw = ImageDraw.Draw(image)
        draw.rectangle([20, 20, 120, 180], fill=(31, 119, 180))  # a bar
        if rows:
            draw.multiline_text((140, 10), HIDDEN.decode()[:400], fill=(ink, ink, ink))
        buffer = io.BytesIO()
        image.save(buffer, "PNG")
        return buffer.getvalue()

    crafted, plain = figure(True), figure(False)
    marked = np.asarray(Image.open(io.BytesIO(crafted))) != np.asarray(Image.open(io.BytesIO(plain)))
    assert marked.any(axis=2).sum() > 1000  # the rows are in the submitted pixels
    assert _rebuilt(tmp_path, "fig.png", crafted, "crafted") == _rebuilt(tmp_path, "fig.png", plain, "plain")


# ---- the sandbox the gate rebuilds in (airlock.rebuild_runner: sandbox) --------------------------
_PROBE = r"""
import json, os, socket, sys
job = json.load(sys.stdin)
found = {"own file": open(job["own"], "rb").read(4) == b"PAR1"}
for what, path in job["others"].items():
    try:
        open(path, "rb").read(1)
        found[what] = True
    except OSError:
        found[what] = False
try:
    open("/pds-rebuild-in/planted", "w").write("x")
    found["write beside its input"] = True
except OSError:
    found["write beside its input"] = False
probe = socket.socket()
probe.settimeout(2)
try:
    probe.connect(("192.0.2.1", 80))
    found["network"] = True
except OSError:
    found["network"] = False
found["uid 0"] = os.getuid() == 0
print(json.dumps(found))
"""


def test_the_rebuild_sandbox_sees_its_files_only(runtime, tmp_path):
    """What a file that took over a parser could reach from the rebuild's sandbox: its own copy, and
    nothing of the gate (the staging area of every project, the outbox, the database, the audit
    key), no network, no root."""
    import json
    import subprocess

    from pds_kernel.airlock.rebuild_sandbox import rebuild_sandbox

    settings = runtime.settings
    secrets = {"another project's staged file": settings.paths.staging / "other" / "r" / "0-r1-t.csv",
               "the outbox": settings.paths.outbox / "other" / "r" / "t.csv",
               "the gate's state": settings.paths.state / "probe-secret.txt"}
    for path in secrets.values():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("region,persons\nN,3\n")
    sandbox = rebuild_sandbox(settings, PROJECT)
    assert sandbox is not None  # the default runner on one machine
    source = _write(tmp_path / "t.parquet", _parquet())
    prepared = sandbox.prepare([(source, tmp_path / "out.parquet", "t.parquet")], 1 << 30, ["-c", _PROBE])
    try:
        job = {"own": str(prepared.inside[0][0]), "others": {k: str(v) for k, v in secrets.items()}}
        done = subprocess.run(prepared.argv, input=json.dumps(job).encode(), capture_output=True, env=prepared.env,
                              cwd="/", timeout=120)
    finally:
        sandbox.finish(prepared)
    assert done.returncode == 0, done.stderr[-2000:]
    found = json.loads(done.stdout.decode().strip().splitlines()[-1])
    assert found == {"own file": True, **{k: False for k in secrets}, "write beside its input": False,
                     "network": False, "uid 0": False}
    assert not prepared.work.exists()


def test_a_submission_is_rebuilt_in_the_sandbox_and_leaves_nothing_behind(runtime):
    service, _ = build_service(runtime)
    view = service.create("alice", PROJECT, [("t.parquet", io.BytesIO(_parquet()))], "results",
                          context={"tables": {"t.parquet": DECLARED}})
    assert view.files[0].check_status == "pass"
    work = runtime.settings.paths.state / "rebuilds"
    assert work.is_dir() and not any(work.iterdir())  # the sandbox's work folder, removed after use


def test_a_sandboxed_child_cannot_make_the_gate_copy_a_host_file(runtime, tmp_path):
    """A child taken over replaces its out folder by a link to a host folder holding a file of the
    copy's name, and claims the copy was written: the gate follows no link and takes nothing."""
    import json
    import subprocess

    from pds_kernel.airlock.rebuild_sandbox import rebuild_sandbox

    host_folder = tmp_path / "host-secrets"
    host_folder.mkdir()
    sandbox = rebuild_sandbox(runtime.settings, PROJECT)
    source = _write(tmp_path / "t.parquet", _parquet())
    target = tmp_path / "copy.parquet"
    items = [(source, target, "t.parquet")]
    swap = ("import json, os, shutil, sys; job = json.load(sys.stdin); out = os.path.dirname(job[0][1]); "
            f"shutil.rmtree(out); os.symlink({str(host_folder)!r}, out); "
            "print(json.dumps({'t.parquet': None}))")
    prepared = sandbox.prepare(items, 1 << 30, ["-c", swap])
    (host_folder / prepared.inside[0][1].name).write_bytes(b"PAR1 rows of another project PAR1")
    try:
        payload = json.dumps([[str(s), str(t), n] for s, t, n in prepared.inside]).encode()
        done = subprocess.run(prepared.argv, input=payload, capture_output=True, env=prepared.env, cwd="/",
                              timeout=120)
        assert done.returncode == 0, done.stderr[-2000:]
        assert (prepared.home / "out").is_symlink()  # the child did swap its folder
        sandbox.collect(prepared, items, json.loads(done.stdout))
    finally:
        sandbox.finish(prepared)
    assert not target.exists()
