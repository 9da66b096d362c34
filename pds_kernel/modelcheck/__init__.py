"""The platform's own check of a model that asks to leave (docs/ai.md, "What the platform checks").

Two halves that never run in the same process:

- inside the check sandbox, with the check environment (``.venv-modelcheck``: sacroml and the
  model loaders, see ``images/model-check/pyproject.toml``): :mod:`.loaders` loads the model
  without running code, :mod:`.run` rebuilds the declared training and test rows and attacks the
  model, writing ``report.json`` and ``roc.png``;
- in the gate: :mod:`.inputs` validates the declaration and snapshots the declared files,
  :mod:`.sandbox` starts a fresh sandbox of the project around :mod:`.run`, and :mod:`.verdict`
  reads what it wrote (as untrusted input) and turns it into findings.

Importing this package imports nothing.
"""

#: the model formats the platform attacks (:data:`.loaders.LOADERS` loads exactly these)
ATTACKED_FORMATS = frozenset({"xgboost-json", "xgboost-ubj", "lightgbm", "skops"})
