"""Red team 13: the deliveries and the trusted third party's NIRs where workspaces read.

Red team 12B closed the lake and the quality reports: an ingest whose ``paths.lake`` or
``paths.reports`` sits in a place a workspace mounts or a reviewer reads is refused. Three more
places hold every person's NIR: ``paths.raw`` (the CSV deliveries, where the demo writes its
synthetic one), a delivery the operator ingests from wherever it was copied, and ``paths.ttp``
(the trusted third party's NIR correspondence, which ``pds snds cohort-list`` installs and every
cohort import reads). None of them was checked: 5 attempts, all got through before the fix (the
demo wrote its delivery into a researcher's home, the ingest read a delivery from a project's
imports, the correspondence was installed in the imports area and used there). Each is now refused
before anything is written or read, with what to do.
"""

from __future__ import annotations

from dataclasses import replace

import pytest
import yaml
from intake_damage_support import fresh_runtime, make_rows, write_delivery
from typer.testing import CliRunner

from pds_kernel.airlock.cohort_link import link_staged
from pds_kernel.cli.app import app
from pds_kernel.demo import DemoOptions, generate_delivery
from pds_kernel.errors import PermissionDenied
from pds_kernel.ingest import ingest_delivery
from pds_kernel.pseudo import KeyStore
from pds_kernel.runtime import Runtime
from pds_kernel.snds.cohort_list import generate_cohort_list
from pds_kernel.snds.generator import generate

HOME = ("alice", "diab-study")


def _moved(runtime: Runtime, **places) -> Runtime:
    return Runtime(replace(runtime.settings, paths=replace(runtime.settings.paths, **places)))


def _files_under(place) -> list:
    return [p for p in place.rglob("*") if p.is_file()] if place.exists() else []


def test_an_ingest_with_the_deliveries_in_a_researchers_home_is_refused(tmp_path):
    base = fresh_runtime(tmp_path)
    runtime = _moved(base, raw=base.settings.paths.homes.joinpath(*HOME, "raw"))
    delivery = write_delivery(tmp_path / "d", make_rows(months=("202301",)))
    with pytest.raises(PermissionDenied, match=r"paths.raw .* is inside paths.homes"):
        ingest_delivery(runtime, delivery, actor="operator")
    [entry] = runtime.audit.entries(action="ingest.run")
    assert entry.outcome == "failed" and "paths.raw" in entry.details["error"]
    assert not _files_under(runtime.settings.paths.lake)


def test_a_delivery_copied_into_a_projects_imports_is_not_ingested_from_there(tmp_path):
    runtime = fresh_runtime(tmp_path)
    delivery = write_delivery(runtime.settings.paths.imports / "diab-study" / "r1", make_rows(months=("202301",)))
    with pytest.raises(PermissionDenied, match=r"the delivery .* is inside paths.imports .* move it to paths.raw"):
        ingest_delivery(runtime, delivery, actor="operator")
    [entry] = runtime.audit.entries(action="ingest.run")
    assert entry.outcome == "failed" and "paths.imports" in entry.details["error"]
    assert not _files_under(runtime.settings.paths.lake)


def test_the_demo_never_writes_its_delivery_into_a_home(tmp_path):
    base = fresh_runtime(tmp_path)
    home = base.settings.paths.homes.joinpath(*HOME)
    runtime = _moved(base, raw=home / "raw")
    with pytest.raises(PermissionDenied, match=r"paths.raw .* is inside paths.homes"):
        generate_delivery(runtime.settings, DemoOptions(tmp_path / "demo", patients=20, years=(2022, 2022)))
    assert not _files_under(home)


def test_the_nir_correspondence_is_never_installed_in_the_imports_area(tmp_path):
    runtime = fresh_runtime(tmp_path)
    settings = replace(runtime.settings, paths=replace(runtime.settings.paths,
                                                       ttp=runtime.settings.paths.imports / "ttp"))
    generate(tmp_path / "delivery", patients=30, years=(2022, 2022), seed=2)
    cfg = tmp_path / "pds.yaml"
    cfg.write_text(yaml.safe_dump({"paths": {f: str(getattr(settings.paths, f)) for f in vars(settings.paths)}}))
    out = CliRunner().invoke(app, ["-c", str(cfg), "snds", "cohort-list", "--delivery", str(tmp_path / "delivery"),
                                   "--out", str(tmp_path / "list.csv"), "--matched", "5", "--unmatched", "1"])
    assert isinstance(out.exception, PermissionDenied)  # `pds` prints it as one line and exits non-zero
    assert "paths.ttp" in str(out.exception) and "inside paths.imports" in str(out.exception)
    assert not _files_under(settings.paths.imports)
    assert not (tmp_path / "list.csv").exists()


def test_a_cohort_is_never_linked_with_a_correspondence_in_the_imports_area(tmp_path):
    runtime = fresh_runtime(tmp_path)
    ttp = runtime.settings.paths.imports / "ttp"
    generate(tmp_path / "delivery", patients=30, years=(2022, 2022), seed=2)
    made = generate_cohort_list(tmp_path / "delivery", tmp_path / "outside" / "list.csv", ttp,
                                matched=5, unmatched=1, duplicated=0, invalid=0, seed=3)
    settings = replace(runtime.settings, paths=replace(runtime.settings.paths, ttp=ttp))
    KeyStore(settings.paths.keys).ensure("diab-study", "setup")  # all the linkage needs, but its place
    request = tmp_path / "staging" / "diab-study" / "r1"
    (request / "raw").mkdir(parents=True)
    (request / "raw" / "list.csv").write_bytes(made.path.read_bytes())
    with pytest.raises(PermissionDenied, match=r"paths.ttp .* is inside paths.imports"):
        link_staged(settings, "diab-study", "r1", request, "list.csv", audit=runtime.audit)
    assert not (request / "link").exists()
