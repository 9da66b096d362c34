"""Red team 18B: a column of the extract carried out by two authors, and in text and code files.

Each attack submits real files (model weights saved with safetensors; Python, Markdown, text,
JSON and notebook files as a researcher writes them) through the real airlock service, on a
project with a real extract built from a synthetic delivery, and asserts the gate fails the file
with a finding that says why. 12 attempts, 10 of which got through before this round's fixes
(each file went to a checker as "review", with nothing saying what it held):

1. The residuals red team 16B left on its rule judging several model files as one: a column cut
   into pieces under the model rules' limits, sent by TWO authors of the project (shuffled values;
   runs of rows in row order: 2 attempts). Only the author's own exports were judged together.
   The fix (pds_kernel/airlock/export_history.py, checks/model_split.py) judges each model with
   the project's recent exports, the author's first then every other author's, within the same
   bounds; another author's file is named to the checker by its request id only (the author sees
   only the rule's fixed explanation). A file adding to other authors' pieces that are over the
   limit without it goes to review (their submission was blamed), so that one author's cut
   column does not fail every later model of the project.
2. The same column written out in text and code files, which only a checker read: 5,000 paid
   amounts of the claims in the extract's row order as a Python list literal whose lines a
   comment cuts (under the literal-table rule of 20 lines), the dates of care as ISO strings, the
   amounts shuffled one a line in Markdown, as a JSON list, in a notebook's code cell, and as JSON
   numbers in a cell's metadata (the notebook metadata rules read its strings only); and runs of
   the amounts' rows cut across a text file, a script and another author's Markdown; and 3,000
   scaled amounts (no value of the extract) as numbers in a cell's metadata (8 attempts). The fix (checks/text_columns.py) compares the numbers and day-level dates of a
   text or code file with the extract as a model's are: more than 300 distinct values of a column
   beyond chance (measured with each number moved by one unit of its last decimal), or 20 runs of
   its rows in row order, fail (``embedded-data``); text and code files join the files judged as
   one (model_split.py); a notebook's metadata is bounded by its JSON's size, numbers included
   (checks/code.py), not its strings' only.
3. Pieces of 50 to 300 values each, in two model files and in a text file (2 attempts): they go
   to review, which is the documented outcome (named to the checker); not failed, because honest
   tree models hold up to 256 thresholds of a column each (docs/output-checking.md).

Controls: a declared results table passes; a script with a few constants, a Markdown report of
3,000 means and coefficients, and a notebook with a plot get the verdict they had before (review,
with no ``embedded-data`` finding); a model sent after other authors' cut pieces (over the limit
without it) goes to review. Each test's requests are withdrawn after it.
"""

from __future__ import annotations

import base64
import io
import json

import numpy as np
import pytest
from model_tensor_support import SentRequests, authors_gate, safetensors_bytes
from model_tensor_support import checker_findings as findings

AUTHORS = ("bob", "carol", "dave", "erin", "fanny", "gina", "hugo", "ivan", "judith")


@pytest.fixture(scope="module")
def gate(tmp_path_factory):
    """(airlock service, the project's demo extract, a network's genuine weights), for the module."""
    with authors_gate(tmp_path_factory.mktemp("redteam18-exports"), AUTHORS) as world:
        yield world


SENT = SentRequests()  #: the running test's requests


@pytest.fixture(autouse=True)
def _withdrawn_after(gate):
    """Each test's requests are withdrawn after it (withdrawn requests are not judged with later
    ones): the tests share one project, and each attack is judged on its own pieces."""
    yield
    SENT.withdraw_all(gate[0])


def _send(service, author: str, files: dict[str, bytes], context: dict | None = None):
    return SENT.send(service, author, files, context)


def _piece(weights: dict, values: np.ndarray) -> bytes:
    return safetensors_bytes({**weights, "fc3.bias": values.astype(np.float32)})


def _amounts(extract) -> np.ndarray:
    """Distinct paid amounts of the claims that are no quarter under 1024 (which every model holds)."""
    values = np.unique(extract.claims.PRS_PAI_MNT.dropna().to_numpy())
    return values[(np.abs(values) >= 1024) | (values * 4 != np.round(values * 4))]


def _rows(extract) -> np.ndarray:
    return extract.claims.PRS_PAI_MNT.dropna().to_numpy()[:5000]


def _failed(found: list[dict], rule: str, words: str) -> bool:
    return any(f["rule"] == rule and f["status"] == "fail" and words in f["message"] for f in found)


# ---- 1. pieces sent by two authors --------------------------------------------------------------

def test_a_column_cut_into_pieces_by_two_authors_fails_naming_the_other_by_request_id_only(gate):
    """Got through before: bob sends 4 requests of 40 amounts, carol 4 more (320 distinct values,
    shuffled); each author's own pieces stay under 300. Carol's last now fails, naming bob's
    requests by id only (never bob's file names; carol reads no name nor id), and bob's own pieces
    stay in review. Control: a later model adding to them goes to review (carol's was blamed)."""
    service, extract, weights = gate
    pieces = np.split(np.random.default_rng(18).permutation(_amounts(extract))[:320], 8)
    sent = {}
    for n, piece in enumerate(pieces[:4]):
        sent[n] = _send(service, "bob", {f"bob-secret-{n}.safetensors": _piece(weights, piece)})
        assert sent[n].files[0].check_status == "review", findings(service, sent[n])
    for n, piece in enumerate(pieces[4:], start=4):
        view = _send(service, "carol", {f"net-{n}.safetensors": _piece(weights, piece)})
        found = findings(service, view)
        if n < 7:
            assert view.files[0].check_status == "review", found
    assert view.files[0].check_status == "fail", found
    assert _failed(found, "model-tensors", "cut into pieces"), found
    assert any(f"of other authors: request {sent[3].id[:8]}" in f["message"] for f in found), found
    assert "bob-secret" not in json.dumps(found), found
    shown = json.dumps(service.get_request("carol", view.id).files[0].check)  # what carol reads
    assert "another author" not in shown and sent[3].id[:8] not in shown, shown

    # control: a model adding 40 paid amounts of fanny's own (none a base amount, a column bob's and
    # carol's hold fewer of) to the 320 is named to the checker, not failed: carol's was blamed
    mine = np.random.default_rng(18).permutation(_amounts(extract))[320:]
    mine = mine[~np.isin(mine, extract.claims.BSE_REM_MNT.dropna().to_numpy())][:40]
    view = _send(service, "fanny", {"mine.safetensors": _piece(weights, mine)})
    found = findings(service, view)
    assert view.files[0].check_status == "review", found
    assert any(f["rule"] == "model-tensors" and f["status"] == "review" and "their submission was blamed"
               in f["message"] for f in found), found


def _run_piece(extract, weights: dict, start: int, tmp_path) -> bytes:
    """A network holding the amounts of the claims from row ``start`` on, as many as make 7 to 9
    runs of rows in row order (repeats collapse: the rows a run needs vary)."""
    from pds_kernel.airlock.checks.model_reference import reference_at
    from pds_kernel.airlock.checks.model_split import evidence_of

    rows, reference = extract.claims.PRS_PAI_MNT.dropna().to_numpy(), reference_at(extract.path)
    for length in range(8, 40):
        data = _piece(weights, rows[start:start + length])
        (tmp_path / "piece.safetensors").write_bytes(data)
        found = evidence_of(tmp_path / "piece.safetensors", "piece.safetensors", reference) or {}
        if max((runs for _, _, runs in found.values()), default=0) >= 7:
            assert max(runs for _, _, runs in found.values()) <= 9, found
            return data
    raise AssertionError(f"no run of rows from row {start}")


def test_a_column_in_row_order_cut_into_runs_by_two_authors_fails(gate, tmp_path):
    """Got through before: consecutive amounts in the claims' row order, 7 to 9 runs of rows each
    (dave's two hold under the 20 of one file), two from dave and the third from erin."""
    service, extract, weights = gate
    for author, start in (("dave", 1200), ("dave", 1600), ("erin", 2000)):
        view = _send(service, author, {f"run-{start}.safetensors": _run_piece(extract, weights, start, tmp_path)})
        if author == "dave":
            assert view.files[0].check_status == "review", findings(service, view)
    found = findings(service, view)
    assert view.files[0].check_status == "fail", found
    assert _failed(found, "model-tensors", "runs of consecutive rows") and "of another author" in str(found), found


# ---- 2. a column written in text and code files ---------------------------------------------------

def _py_literal(values: np.ndarray) -> str:
    """A list literal of 7 values a line, a comment every 10 lines (under the 20-line table rule)."""
    lines = ["AMOUNTS = ["]
    for n in range(0, len(values), 7):
        if n // 7 % 10 == 9:
            lines.append("    # continued")
        lines.append("    " + ", ".join(f"{v:.2f}" for v in values[n:n + 7]) + ",")
    return "\n".join(lines + ["]", "print(sum(AMOUNTS))", ""])


def _notebook(source: str, outputs: list | None = None, metadata: dict | None = None) -> bytes:
    cells = [{"cell_type": "code", "execution_count": None, "metadata": metadata or {}, "outputs": outputs or [],
              "source": source.splitlines(keepends=True)}]
    return json.dumps({"cells": cells, "metadata": {}, "nbformat": 4, "nbformat_minor": 5}, indent=1).encode()


def _attacks(extract) -> dict[str, bytes]:
    rows = _rows(extract)
    shuffled = np.random.default_rng(5).permutation(rows)
    days = extract.claims.EXE_SOI_DTD.dropna().astype(str).str[:10].to_numpy()[:3000]
    return {"amounts.py": _py_literal(rows).encode(),
            "dates.py": ("DAYS = [\n" + "".join(f"    '{d}',{'  # x' if n % 15 == 14 else ''}\n"
                                                for n, d in enumerate(days)) + "]\n").encode(),
            "amounts.md": ("# Amounts\n\n" + "".join(f"- {v:.2f}\n" + ("\nand\n\n" if n % 40 == 39 else "")
                                                     for n, v in enumerate(shuffled))).encode(),
            "amounts.json": json.dumps({"values": [round(float(v), 2) for v in shuffled]}).encode(),
            "analysis.ipynb": _notebook(_py_literal(rows)),
            "metadata.ipynb": _notebook("print('hello')\n", metadata={"tags": [], "cache": rows.tolist()})}


@pytest.mark.parametrize("name", ["amounts.py", "dates.py", "amounts.md", "amounts.json", "analysis.ipynb",
                                  "metadata.ipynb"])
def test_an_extract_column_written_in_a_text_or_code_file_fails(gate, name):
    """Got through before (review: "code is read by a checker" / "text files are read by a checker",
    no embedded-data finding): the column in row order (code, notebook cell, dates, a cell's metadata
    as JSON numbers, which the metadata rules, reading strings, did not see) or shuffled (Markdown,
    JSON)."""
    service, extract, _ = gate
    view = _send(service, "gina", {name: _attacks(extract)[name]})
    found = findings(service, view)
    assert view.files[0].check_status == "fail", found
    assert any(f["rule"] == "embedded-data" and f["status"] == "fail" and "of the extract's column ER_PRS_F."
               in f["message"] and "read the data from /data" in f["message"] for f in found), found


def test_numbers_in_a_notebooks_metadata_count_in_its_size(gate):
    """Got through before (review): 3,000 amounts scaled by 1.07 (no value of the extract any more)
    as JSON numbers in a cell's metadata; the 16 KiB bound on metadata counted its strings only."""
    service, extract, _ = gate
    scaled = [round(float(v) * 1.07, 4) for v in _rows(extract)[:3000]]
    view = _send(service, "gina", {"scaled.ipynb": _notebook("print('hello')\n", metadata={"cache": scaled})})
    found = findings(service, view)
    assert view.files[0].check_status == "fail", found
    assert _failed(found, "embedded-data", "bytes of metadata (at most 16384)"), found


def test_legitimate_text_code_and_notebooks_keep_their_verdict(gate):
    """Controls: a declared results table passes; a script with a few constants, a Markdown report
    of 3,000 means and coefficients (two decimals, some equal to amounts of the claims by chance)
    and a notebook with a plot go to review as before, with no embedded-data finding."""
    service, extract, _ = gate
    declared = {"tables": {"t.csv": {"labels": ["sex"], "counts": ["persons"], "unit": "persons"}}}
    view = _send(service, "hugo", {"t.csv": b"sex,persons\n1,123\n2,141\n"}, declared)
    assert view.files[0].check_status == "pass", findings(service, view)
    means = np.random.default_rng(1).uniform(0, 300, 3000)
    png = base64.b64encode(_png()).decode()
    files = {"fit.py": b"import pandas as pd\nTHRESHOLD = 1024.5\nYEARS = [2021, 2022]\nWEIGHTS = [0.25, 1.75, 2.5]\n"
                       b"df = pd.read_parquet('/data/ER_PRS_F.parquet')\nprint(df.PRS_PAI_MNT.mean())\n",
             "report.md": ("# Results\n\n| group | mean | coefficient |\n| --- | --- | --- |\n" + "".join(
                 f"| {n} | {m:.2f} | {c:.3f} |\n" for n, (m, c) in enumerate(zip(means, means / 97)))).encode(),
             "plot.ipynb": _notebook("import matplotlib.pyplot as plt\nplt.plot([1, 2, 3], [4.5, 5.25, 6.75])\n",
                                     [{"output_type": "display_data", "metadata": {},
                                       "data": {"image/png": png, "text/plain": "<Figure size 640x480>"}}])}
    for name, data in files.items():
        view = _send(service, "hugo", {name: data})
        found = findings(service, view)
        assert view.files[0].check_status == "review", (name, found)
        assert not [f for f in found if f["rule"] == "embedded-data"], (name, found)


def _png() -> bytes:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(figsize=(2, 2))
    axes.plot([1, 2, 3], [4.5, 5.25, 6.75])
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png")
    plt.close(figure)
    return buffer.getvalue()


def _text_run_piece(extract, start: int) -> bytes:
    """A text file of the amounts of the claims from row ``start`` on, one a line, as many as make
    7 to 9 runs of rows in row order."""
    from pds_kernel.airlock.checks.model_reference import reference_at
    from pds_kernel.airlock.checks.text_columns import evidence

    rows, reference = extract.claims.PRS_PAI_MNT.dropna().to_numpy(), reference_at(extract.path)
    for length in range(8, 40):
        text = "".join(f"{v:.2f}\n" for v in rows[start:start + length])
        runs = max((r for _, _, r in evidence(text, reference).values()), default=0)
        if runs >= 7:
            assert runs <= 9, runs
            return text.encode()
    raise AssertionError(f"no run of rows from row {start}")


def test_a_column_cut_into_pieces_across_text_and_code_files_fails(gate):
    """Got through before (each file: review, read by a checker): runs of the amounts in the claims'
    row order, 7 to 9 runs each (under the 20 of one file), in a text file, a Python file and a
    Markdown file sent one after another by ivan and, the last, by judith."""
    service, extract, _ = gate
    for author, name, start in (("ivan", "a.txt", 3000), ("ivan", "b.py", 3400), ("judith", "c.md", 3800)):
        data = _text_run_piece(extract, start)
        view = _send(service, author, {name: b'X = """\n' + data + b'"""\n' if name.endswith(".py") else data})
        found = findings(service, view)
        if author == "ivan":
            assert view.files[0].check_status == "review", found
    assert view.files[0].check_status == "fail", found
    assert _failed(found, "embedded-data", "runs of consecutive rows") and "a text file (request " in str(found), found


# ---- 3. pieces of 50 to 300 values ----------------------------------------------------------------

def test_pieces_of_fifty_to_three_hundred_values_go_to_review(gate):
    """Documented outcome (not failed: honest tree models hold up to 256 thresholds of a column):
    two model files of 160 amounts each, and a text file of 150 amounts, are each named to the
    checker, with the union of the two models named too."""
    service, extract, weights = gate
    values = np.random.default_rng(19).permutation(_amounts(extract))[:320]
    view = _send(service, "hugo", {"a.safetensors": _piece(weights, values[:160]),
                                   "b.safetensors": _piece(weights, values[160:])})
    for f in service.get_request("olga", view.id).files:
        assert f.check_status == "review", f.check["findings"]
        assert any(x["rule"] == "model-tensors" and x["status"] == "review" and "(this request)" in x["message"]
                   for x in f.check["findings"]), f.check["findings"]
    text = "\n".join(f"{v:.2f}" for v in values[:150]).encode()
    view = _send(service, "hugo", {"some.txt": text + b"\n"})
    found = findings(service, view)
    assert view.files[0].check_status == "review", found
    assert any(f["rule"] == "embedded-data" and f["status"] == "review" for f in found), found
