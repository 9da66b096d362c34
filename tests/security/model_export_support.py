"""Support of tests/security/test_model_export.py: the model-check fixtures of tests/ai, and
payloads (pickles that run code, skops files naming untrusted types)."""

from __future__ import annotations

import io
import json
import os
import pickle
import sys
import zipfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "ai"))  # its helper module

from model_check_support import (  # noqa: F401  (re-exported for the tests)
    FEATURES,
    OTHER,
    PROJECT,
    home,
    make_service,
    model_file,
    overfit_tree,
    people,
    publish_cohort,
    reasonable_xgboost,
    submit,
    write_rows,
)


class RunsCode:
    """Unpickling this runs ``touch <sentinel>``."""

    def __init__(self, sentinel: Path):
        self.sentinel = sentinel

    def __reduce__(self):
        return (os.system, (f"touch {self.sentinel}",))


def pickle_payload(sentinel: Path) -> bytes:
    return pickle.dumps(RunsCode(sentinel), protocol=4)


def skops_with_pickle(sentinel: Path, frame) -> bytes:
    """A real skops file of a tree, plus a ``data.pkl`` member that runs code when unpickled."""
    buf = io.BytesIO(overfit_tree(frame))
    out = io.BytesIO()
    with zipfile.ZipFile(buf) as src, zipfile.ZipFile(out, "w") as dst:
        for item in src.infolist():
            dst.writestr(item, src.read(item))
        dst.writestr("data.pkl", pickle_payload(sentinel))
    return out.getvalue()


def skops_naming_os_system(frame) -> bytes:
    """A real skops file of a pipeline whose first step calls ``os.system`` on its input."""
    import skops.io as sio
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import FunctionTransformer

    rows = frame.iloc[:200]
    model = make_pipeline(FunctionTransformer(func=os.system, validate=False), LogisticRegression())
    model.steps[1][1].fit(rows[FEATURES].to_numpy(), rows["outcome"].to_numpy())
    data = sio.dumps(model)
    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        assert "system" in json.dumps(json.loads(archive.read("schema.json")))
    return data
