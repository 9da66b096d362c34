"""``pds_kernel.workspace`` against a small Parquet extract, in this process and in a real sandbox."""

from __future__ import annotations

import json
import shutil

import polars as pl
import pytest

from pds_kernel import workspace as ws
from pds_kernel.errors import InvalidInput, NotFound
from pds_kernel.sandbox.exec import run_in_sandbox


@pytest.fixture
def extract(tmp_path, monkeypatch):
    data = tmp_path / "data"
    data.mkdir()
    pl.DataFrame({"person": ["a", "b", "a", "c"], "amount": [1.0, 2.0, 3.0, 4.0]}).write_parquet(data / "ER_PRS_F.parquet")
    pl.DataFrame({"person": ["a", "b", "c"]}).write_parquet(data / "COHORT.parquet")
    (data / "manifest.json").write_text(json.dumps({"tables": {
        "ER_PRS_F": {"file": "ER_PRS_F.parquet", "rows": 4}, "COHORT": {"file": "COHORT.parquet", "rows": 3}}}))
    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("PDS_DATA_DIR", str(data))
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.chdir(home)
    return data


def test_tables_and_polars(extract):
    assert ws.tables() == ["COHORT", "ER_PRS_F"]
    totals = ws.open_table("ER_PRS_F").group_by("person").agg(pl.col("amount").sum()).sort("person").collect()
    assert totals.to_dict(as_series=False) == {"person": ["a", "b", "c"], "amount": [4.0, 2.0, 4.0]}


def test_tables_without_manifest(extract):
    (extract / "manifest.json").unlink()
    assert ws.tables() == ["COHORT", "ER_PRS_F"]


@pytest.mark.parametrize("name, error", [
    ("../../etc/passwd", InvalidInput), ("ER_PRS_F.parquet", InvalidInput), ("IR_BEN_R", NotFound),
    ("", InvalidInput),
])
def test_table_names_are_validated(extract, name, error):
    with pytest.raises(error):
        ws.open_table(name)


def test_manifest_cannot_point_outside(extract):
    (extract / "manifest.json").write_text(json.dumps({"tables": {"ER_PRS_F": {"file": "../secret.parquet"}}}))
    with pytest.raises(InvalidInput, match="unexpected file"):
        ws.table_path("ER_PRS_F")


@pytest.fixture
def partitioned(extract):
    """ER_PRS_F as an extract build writes it: partitions by a hash of PERSON_ID, in a directory."""
    (extract / "ER_PRS_F.parquet").unlink()
    (extract / "ER_PRS_F").mkdir()
    files = []
    for i, rows in enumerate(({"person": ["a", "a"], "amount": [1.0, 3.0]}, {"person": ["b", "c"], "amount": [2.0, 4.0]})):
        file = f"ER_PRS_F/part-{i:05d}-of-00002.parquet"
        pl.DataFrame(rows).write_parquet(extract / file)
        files.append({"file": file, "rows": 2})
    (extract / "manifest.json").write_text(json.dumps({"tables": {
        "ER_PRS_F": {"files": files, "rows": 4}, "COHORT": {"file": "COHORT.parquet", "rows": 3}}}))
    return extract


def test_partitioned_table_reads_whole(partitioned):
    assert ws.tables() == ["COHORT", "ER_PRS_F"]
    assert [p.name for p in ws.table_files("ER_PRS_F")] == ["part-00000-of-00002.parquet", "part-00001-of-00002.parquet"]
    totals = ws.open_table("ER_PRS_F").group_by("person").agg(pl.col("amount").sum()).sort("person").collect()
    assert totals.to_dict(as_series=False) == {"person": ["a", "b", "c"], "amount": [4.0, 2.0, 4.0]}
    assert ws.dask_dataframe("ER_PRS_F")["amount"].sum().compute(scheduler="sync") == 10.0
    (partitioned / "manifest.json").unlink()
    assert ws.tables() == ["COHORT", "ER_PRS_F"] and ws.open_table("ER_PRS_F").collect().height == 4


@pytest.mark.parametrize("file", ["../secret.parquet", "COHORT.parquet", "ER_PRS_F/../../x/part-0-of-1.parquet",
                                  "ER_PRS_F/notes.csv"])
def test_manifest_partitions_cannot_point_elsewhere(partitioned, file):
    manifest = json.loads((partitioned / "manifest.json").read_text())
    manifest["tables"]["ER_PRS_F"]["files"].append({"file": file})
    (partitioned / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(InvalidInput, match="unexpected file"):
        ws.open_table("ER_PRS_F")


def test_dask_dataframe_without_cluster(extract):
    assert ws.dask_dataframe("ER_PRS_F")["amount"].sum().compute(scheduler="sync") == 10.0


def test_request_export_validates_files(extract, tmp_path):
    with pytest.raises(InvalidInput, match="justification"):
        ws.request_export(["x.csv"], "  ")
    with pytest.raises(InvalidInput, match="not in your home"):
        ws.request_export([extract / "ER_PRS_F.parquet"], "want the data")
    with pytest.raises(InvalidInput, match="not in your home"):
        ws.request_export(["../data/ER_PRS_F.parquet"], "relative escape")
    with pytest.raises(NotFound):
        ws.request_export(["missing.csv"], "a table")
    (tmp_path / "home" / "link.parquet").symlink_to(extract / "ER_PRS_F.parquet")
    with pytest.raises(InvalidInput, match="not in your home"):
        ws.request_export(["link.parquet"], "through a link")
    (tmp_path / "home" / "table1.csv").write_text("a,b\n")
    assert ws._export_files(["table1.csv"]) == [(tmp_path / "home" / "table1.csv").resolve()]


@pytest.mark.functional
@pytest.mark.slow
@pytest.mark.skipif(shutil.which("bwrap") is None, reason="bubblewrap is not installed")
def test_dask_cluster_inside_the_sandbox(world):
    """The Dask LocalCluster runs in the sandbox, under its limits, on the project's extract."""
    world.registry.upsert_project("admin", "proj-a", cpu_limit=2.0)  # memory stays at 1024 MB
    script = (
        "import json\n"
        "from pds_kernel import workspace as ws\n"
        "client = ws.dask_client()\n"
        "ddf = ws.dask_dataframe('ER_PRS_F')\n"
        "out = {'workers': len(client.scheduler_info()['workers']),\n"
        "       'total': float(ddf['amount'].sum().compute()),\n"
        "       'persons': int(ddf['person'].nunique().compute()),\n"
        "       'link': client.dashboard_link, 'tables': ws.tables()}\n"
        "client.close(); client.cluster.close()\n"
        "json.dump(out, open('/home/jovyan/dask.json', 'w'))\n"
    )
    code = run_in_sandbox(world.runtime, "alice", "proj-a", ["python", "-c", script], actor="test",
                          env={"JUPYTERHUB_SERVICE_PREFIX": "/user/alice/proj-a/"}, timeout=120)
    assert code == 0
    out = json.loads((world.runtime.settings.paths.homes / "proj-a" / "alice" / "dask.json").read_text())
    expected = pl.read_parquet(world.runtime.settings.paths.projects / "proj-a" / "extract" / "ER_PRS_F.parquet")
    assert out["workers"] == 2
    assert out["total"] == pytest.approx(expected["amount"].sum())
    assert out["persons"] == expected["person"].n_unique()
    assert out["link"] == "/user/alice/proj-a/proxy/8787/status"
    assert out["tables"] == ["ER_PRS_F"]


DASK_LIFECYCLE = """
import json, socket, subprocess, sys
from pds_kernel import workspace as ws
first = ws.dask_client(1)
link = first.dashboard_link
ddf = ws.dask_dataframe("ER_PRS_F")
persons = int(ddf["person"].nunique().compute())   # a shuffle: no peer-to-peer WARNING
first.close()                                       # stops the cluster too
freed = not ws._port_in_use(PORT)
second = ws.dask_client(1)
other = subprocess.run([sys.executable, "-c", "from pds_kernel import workspace as ws; ws.dask_client(1)"],
                       capture_output=True, text=True, timeout=120)
print(json.dumps({"links": [link, second.dashboard_link], "freed": freed, "persons": persons,
                  "other": other.stderr[-600:]}))
second.close()
"""


@pytest.mark.slow
def test_dask_client_owns_its_cluster_and_keeps_the_dashboard_port(extract):
    """#15: client.close() left the cluster running, so the next notebook's dashboard moved to a
    port the workspace's proxy refuses while its link still said 8787."""
    import subprocess
    import sys

    from ports import free_port

    port = free_port()
    env = {"PATH": "/usr/bin:/bin", "HOME": str(extract.parent / "home"), "PDS_DATA_DIR": str(extract),
           "PDS_DASK_DASHBOARD_PORT": str(port), "JUPYTERHUB_SERVICE_PREFIX": "/user/alice/proj-a/",
           "TMPDIR": str(extract.parent)}
    done = subprocess.run([sys.executable, "-c", DASK_LIFECYCLE.replace("PORT", str(port))], env=env,
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    out = json.loads(done.stdout.strip().splitlines()[-1])
    assert out["links"] == [f"/user/alice/proj-a/proxy/{port}/status"] * 2
    assert out["freed"] and out["persons"] == 3
    assert "another notebook's Dask cluster is running" in out["other"], out["other"]
    assert "WARNING" not in done.stderr and "shuffle" not in done.stderr.lower(), done.stderr[-3000:]
