"""A demo directory built with the demo's own steps, for the example-notebook tests."""

from __future__ import annotations

import json
import subprocess
import sys
from datetime import date
from pathlib import Path

from pds_kernel.demo import DemoOptions, build_extracts, build_registry_spec, generate_delivery, ingest, prepare
from pds_kernel.registry import Registry
from pds_kernel.registry.spec import parse_registry
from pds_kernel.runtime import Runtime


def build_demo(directory: Path, *, patients: int, years: tuple[int, int], seed: int,
               resources: dict[str, dict] | None = None) -> tuple[Path, Path]:
    """Synthetic delivery, ingestion, registry and extracts, as ``make run`` does them.

    ``resources``: per project id, resources that replace the demo's (e.g. Dask workers).
    Returns the demo directory and its configuration file."""
    options = DemoOptions(directory, patients=patients, years=years, seed=seed)
    config, settings = prepare(options)
    runtime = Runtime(settings)
    try:
        generate_delivery(settings, options)
        ingest(runtime, options, actor="os:demo-tester")
        registry = Registry.from_runtime(runtime)
        spec = build_registry_spec(registry, date.today())
        for project in spec["projects"]:
            if project["id"] in (resources or {}):
                project["resources"] = resources[project["id"]]
        registry.apply("admin", parse_registry(spec, "test registry"))
        build_extracts(runtime, options.directory.resolve(), options, actor="admin")
    finally:
        runtime.close()
    return options.directory.resolve(), config


def execute_example(root: Path, config: Path, project: str, user: str, notebook: str) -> tuple[Path, dict]:
    """Copy the example ``notebook`` into ``user``'s home of ``project`` and execute it there with
    ``pds sandbox exec`` (nbconvert), as the demo's OS user (mapped to admin). Returns the home and
    the executed notebook; the run must succeed and no cell may end in an error."""
    from pds_kernel.sandbox.spawner import NOTEBOOKS

    home = root / "homes" / project / user
    (home / "examples").mkdir(parents=True, exist_ok=True)
    (home / "examples" / notebook).write_bytes((NOTEBOOKS / notebook).read_bytes())
    pds = [str(Path(sys.executable).parent / "pds"), "--config", str(config)]
    run = subprocess.run([*pds, "sandbox", "exec", project, "--user", user, "--",
                          "python", "-m", "jupyter", "nbconvert", "--to", "notebook", "--execute",
                          "--output", "executed.ipynb", f"examples/{notebook}"],
                         capture_output=True, text=True, timeout=540)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    executed = json.loads((home / "examples" / "executed.ipynb").read_text())
    outputs = [o for c in executed["cells"] if c["cell_type"] == "code" for o in c.get("outputs", [])]
    assert outputs and not [o for o in outputs if o["output_type"] == "error"]
    return home, executed
