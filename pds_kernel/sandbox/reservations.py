"""The terms of the served-bytes budget shared by the notebook server and the hub.

The notebook server (:mod:`.budget`) reserves bytes from the hub before it sends them; the hub's
ledger (:mod:`pds_kernel.served_bytes`, served by :mod:`pds_kernel.hub.budget`) grants them. Both
sides read these constants from here, so the hub's side does not load the notebook server's web
framework (Tornado) to know them: ``pds ingest`` checks the database schema, which imports the
ledger's table.
"""

from __future__ import annotations

#: Path of the hub's reservation endpoint under its API (``/hub/api/pds/served-bytes/USER/SERVER``).
API_PATH = "/api/pds/served-bytes"
#: Largest single reservation a server may ask for (and the largest single response).
MAX_RESERVATION = 64 * 1024 * 1024
#: A server's first reservation; each next one is twice the last, up to the configured size.
FIRST_RESERVATION = 64 * 1024
