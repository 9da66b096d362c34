"""The delivery profile agrees with the published SNDS schema it is a subset of."""

from pds_kernel.snds.schema import source_table
from pds_kernel.snds.tables import DCIR_KEYS, TABLES, check_against_published_schema


def test_every_profile_column_exists_in_the_published_schema():
    assert check_against_published_schema() == []


def test_dcir_detail_tables_carry_the_nine_join_keys():
    assert source_table("ER_PRS_F").primary_key == DCIR_KEYS
    for name in ("ER_PRS_F", "ER_PHA_F", "ER_BIO_F"):
        assert set(DCIR_KEYS) <= set(TABLES[name].column_names)
        assert TABLES[name].month_from == "FLX_DIS_DTD"


def test_primary_keys_are_required_columns_of_their_table():
    for t in TABLES.values():
        for key in t.primary_key:
            assert key in t.column_names, (t.name, key)
            assert not t.column(key).nullable, (t.name, key)


def test_person_keys_cover_every_source_identifier():
    found = {k for t in TABLES.values() for k in t.person_keys}
    assert {"BEN_NIR_PSA", "NIR_ANO_17", "BEN_NIR_ANO", "BEN_IDT_ANO"} <= found
