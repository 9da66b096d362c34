"""The output-check gate: export requests, disclosure checks, independent review, release.

- :mod:`.states`: the states and the one table of legal moves (pure);
- :mod:`.permissions`: who may do what (``can_*`` / ``check_*``);
- :mod:`.staging`: immutable hashed copies of submitted files;
- :mod:`.checks`: automatic disclosure checks (ACRO for what it covers);
- :mod:`.release`: atomic, verified copy to the outbox;
- :mod:`.service`: the only writer, used by the CLI and :mod:`.web`;
- :mod:`.client`: what a workspace uses to submit over HTTP.
"""
