"""JupyterHub configuration of PDS Workspace, for both modes.

    PDS_HUB_MODE=local       (default) the embedded default: sandbox spawner, NativeAuthenticator
    PDS_HUB_MODE=kubernetes  production: KubeSpawner, GenericOAuthenticator (OIDC)

The logic lives in ``pds_kernel.hub`` (importable and unit-tested); this file only picks the mode
and hands it the ``c`` config object that JupyterHub passes in.
"""

import os

mode = os.environ.get("PDS_HUB_MODE", "local")

if mode == "local":
    from pds_kernel.hub.local import configure
elif mode == "kubernetes":
    from pds_kernel.hub.kubernetes import configure
else:
    raise SystemExit(f"PDS_HUB_MODE must be 'local' or 'kubernetes', not {mode!r}")

configure(c)  # noqa: F821  (``c`` is provided by JupyterHub)
