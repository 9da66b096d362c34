"""What a CSV or TSV file carries besides the cells the review page shows (red team 15).

A CSV leaves as it was submitted (it is not rebuilt: docs/adr/0010-release-rebuilt-copies.md),
but a reader (pandas, the page) shows its cells, not its bytes: blank lines are skipped, blanks
around a field and the ending of each line are drawn as nothing, and bytes that are not UTF-8 are
each drawn as the same replacement character. Each carried a bit per line or cell past the
checker; each fails ``hidden-text`` here. The page shows each cell as written (``0120``, ``+120``,
``1.2e2``), not as the number pandas reads (:func:`pds_kernel.airlock.web.render.render_file`).
"""

from __future__ import annotations

import csv
import io
from pathlib import Path

from . import content
from .result import Finding, Status


def check_csv(path: Path, separator: str) -> list[Finding]:
    """The ``hidden-text`` findings of a CSV's bytes outside its cells (the caller bounds its size)."""
    data = path.read_bytes()
    found = content.undecodable_rules(data)
    text = data.decode("utf-8", "replace").removeprefix("\ufeff")
    found += content.line_ending_rules(text)
    blank, padded = [], []
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=separator)
    try:
        for record in reader:
            if not record:
                blank.append(reader.line_num)
            elif any(field != field.strip(" \t") for field in record):
                padded.append(reader.line_num)
    except csv.Error:
        pass  # the table reader says what is malformed
    out = [Finding(rule, status, message) for rule, status, message in found]
    if blank:
        out.append(Finding("hidden-text", Status.FAIL, f"{len(blank)} blank line(s) (the first is line {blank[0]}): "
                                                       "readers skip them and the page does not show them, so they "
                                                       "can carry data past the checker; remove them"))
    if padded:
        out.append(Finding("hidden-text", Status.FAIL, f"{len(padded)} line(s) with spaces or tabs at the start or end "
                                                       f"of a field (the first is line {padded[0]}): the page does not "
                                                       "show them, so they can carry data past the checker; remove "
                                                       "them"))
    return out
