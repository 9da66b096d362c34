"""Red team 12B: hiding a raw identifier from the conformity check.

Someone with write access to a built extract (as in test_extract_attacks*.py: the file and the
manifest rewritten consistently, true hashes) hides a cohort person's ``BEN_NIR_PSA`` where the
check did not look: in an allowed column stored with another type than text (dictionary-encoded
``Categorical``, a list of texts, bytes, a struct), or in the Parquet file's own metadata (the
key-value metadata of its footer). And the lake's free text (a drug label copied whole) holding the
identifier in lower case, or cut by dashes or spaces, and the study's linkage file giving the
identifier as the subject number in lower case or cut by dashes. Before the fix, all 10 attempts
got through (each run against the code before the fix); the
check now refuses a column of a type the builder never writes and any footer metadata it does
not write, and looks up identifiers in upper case and with the separators inside a value removed.
"""

from __future__ import annotations

import extract_attacks_support
import polars as pl
import pytest
from extract_attacks_support import SMALL_SPEC, make_registry, manifest_of, rewrite_file, writable_copy, write_lake

from pds_kernel.errors import DisclosureRisk
from pds_kernel.extract.build import raw_identifiers, run_build
from pds_kernel.extract.conformity import check_extract
from pds_kernel.extract.layout import entry_files
from pds_kernel.extract.spec import PERSON_ID, load_spec, parse_spec
from pds_kernel.hashing import sha256_file

rows = extract_attacks_support.rows  # fixtures: the small lake's rows, the lake and the registry
world = extract_attacks_support.world


@pytest.fixture
def published(world, tmp_path):
    built = run_build(world, "diab-study", parse_spec(SMALL_SPEC), actor="root")
    cohort = pl.read_parquet(built.path / "COHORT.parquet")[PERSON_ID]
    raw = raw_identifiers(world.settings.paths.lake)
    return writable_copy(built.path, tmp_path / "copy"), cohort, raw


def _check(copy, cohort, raw):
    return check_extract(copy, parse_spec(SMALL_SPEC), cohort, raw)


def _nir(raw) -> str:
    return sorted(v for v in raw.to_list() if v[0].isalpha())[0]


@pytest.mark.parametrize("kind", ["categorical", "list", "binary", "struct"])
def test_an_identifier_in_a_column_of_another_type_than_text_is_refused(published, kind):
    copy, cohort, raw = published
    nir = _nir(raw)
    drugs = pl.read_parquet(copy / "IR_PHA_R.parquet")
    names = pl.Series("PHA_MED_NOM", [nir] * drugs.height)
    column = {"categorical": names.cast(pl.Categorical), "list": names.map_elements(lambda v: [v], return_dtype=pl.List(pl.String)),
              "binary": names.cast(pl.Binary), "struct": pl.DataFrame({"v": names}).to_struct("PHA_MED_NOM")}[kind]
    rewrite_file(copy, "IR_PHA_R", drugs.with_columns(column.alias("PHA_MED_NOM")))
    report = _check(copy, cohort, raw)
    assert not report.ok and any("IR_PHA_R.PHA_MED_NOM" in r for r in report.reasons), report.reasons
    assert not any(nir in r for r in report.reasons)


def test_an_identifier_in_the_parquet_footer_metadata_is_refused(published):
    copy, cohort, raw = published
    nir = _nir(raw)
    manifest = manifest_of(copy)
    item = entry_files(manifest["tables"]["IR_PHA_R"])[0]
    path = copy / item["file"]
    pl.read_parquet(path).write_parquet(path, metadata={"note": f"patient {nir}"})
    manifest["tables"]["IR_PHA_R"]["sha256"] = sha256_file(path)
    import json
    (copy / "manifest.json").write_text(json.dumps(manifest))
    report = _check(copy, cohort, raw)
    assert not report.ok and any("metadata" in r for r in report.reasons), report.reasons
    assert not any(nir in r for r in report.reasons)


@pytest.mark.parametrize("disguise", ["lower", "dashes", "spaces"])
def test_an_identifier_in_the_lakes_free_text_in_lower_case_or_cut_is_refused(runtime, rows, disguise):
    nir = next(p["BEN_NIR_PSA"] for p in rows["IR_BEN_R"] if any(c.isalpha() for c in p["BEN_NIR_PSA"]))
    text = {"lower": f"see {nir.lower()}", "dashes": "-".join(nir[i:i + 3] for i in range(0, len(nir), 3)),
            "spaces": " ".join(nir[i:i + 4] for i in range(0, len(nir), 4))}[disguise]
    rows["IR_PHA_R"][0]["PHA_MED_NOM"] = text
    write_lake(runtime.settings.paths.lake, rows)
    make_registry(runtime)
    with pytest.raises(DisclosureRisk, match=r"IR_PHA_R.PHA_MED_NOM holds \d+ raw identifier") as refused:
        run_build(runtime, "diab-study", parse_spec(SMALL_SPEC), actor="root")
    assert nir not in str(refused.value) and nir.lower() not in str(refused.value)


@pytest.mark.parametrize("disguise", ["lower", "dashes"])
def test_a_subject_number_that_is_the_nir_in_lower_case_or_cut_is_refused(world, rows, tmp_path, disguise):
    """The study's own linkage file gives each person's BEN_NIR_PSA again as the 'subject number',
    in lower case or cut by dashes: the COHORT table would hand PERSON_ID -> identifier over."""
    def subject(nir: str) -> str:
        return nir.lower() if disguise == "lower" else "-".join(nir[i:i + 6] for i in range(0, len(nir), 6))

    (tmp_path / "cohort.csv").write_text("BEN_NIR_PSA,SUBJECT\n" + "".join(
        f"{p['BEN_NIR_PSA']},{subject(p['BEN_NIR_PSA'])}\n" for p in rows["IR_BEN_R"]))
    (tmp_path / "spec.yaml").write_text(SMALL_SPEC + "linkage: {file: cohort.csv, source_id: BEN_NIR_PSA, "
                                                     "subject_id: SUBJECT}\n")
    with pytest.raises(DisclosureRisk, match="COHORT.SUBJECT holds .* raw identifier") as refused:
        run_build(world, "diab-study", load_spec(tmp_path / "spec.yaml"), actor="root")
    assert not any(p["BEN_NIR_PSA"].lower() in str(refused.value).lower() for p in rows["IR_BEN_R"])
