"""A demo directory built with the demo's own steps, for the example-notebook tests."""

from __future__ import annotations

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
