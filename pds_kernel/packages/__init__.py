"""The curated package index: requests, approvals, the wheelhouse and the index server.

See docs/packages.md. Modules: :mod:`.names` (what a request may name), :mod:`.permissions`,
:mod:`.service` (the only writer), :mod:`.download` (wheels from upstream), :mod:`.wheelhouse`
(the approved files and their manifest), :mod:`.index` (the PEP 503 server).
"""
