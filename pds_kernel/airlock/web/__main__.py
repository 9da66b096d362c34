"""``python -m pds_kernel.airlock.web``: the command JupyterHub runs for the airlock service."""

from . import run_service

run_service()
