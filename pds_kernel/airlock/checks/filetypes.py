"""Which kind of output a file is, decided from its extension and confirmed by its first bytes.

Unknown extensions fail (deny by default); blocked ones fail with the reason; a file whose content
does not match its extension (a ZIP renamed ``.csv``, an executable renamed ``.png``) fails, and
so does any file that is or holds a pickle, whatever its name (:mod:`.models`). The
gate refuses all three outright (:func:`refusal` before a byte is staged, the ``file-type`` rule of
:func:`check_type` right after staging): such a file never reaches a reviewer.
"""

from __future__ import annotations

from pathlib import Path, PurePosixPath

from .models import check_pickles, model_refusal
from .result import Finding, Status

#: How much of a file its type is judged on.
HEAD_BYTES = 4096

#: extension -> kind. Everything not listed is refused.
KINDS: dict[str, str] = {
    ".csv": "table", ".tsv": "table", ".parquet": "table", ".xlsx": "table",
    ".png": "figure", ".jpg": "figure", ".jpeg": "figure", ".pdf": "figure",
    ".txt": "text", ".md": "text", ".json": "text", ".log": "text",
    ".py": "code", ".r": "code", ".sql": "code", ".sh": "code", ".ipynb": "code", ".qmd": "code",
    ".rmd": "code",
    # models: pickle-bearing ones (.pt, .pth, .ckpt) are refused by content (checks/models.py)
    ".onnx": "model", ".safetensors": "model", ".skops": "model", ".ubj": "model", ".pt": "model",
    ".pth": "model", ".ckpt": "model", ".rds": "model",
}

#: extensions refused outright, with the reason a researcher is shown.
BLOCKED: dict[str, str] = {
    ".zip": "archives hide their content from review; submit the files themselves",
    ".gz": "archives hide their content from review; submit the files themselves",
    ".tar": "archives hide their content from review; submit the files themselves",
    ".7z": "archives hide their content from review; submit the files themselves",
    ".pkl": "pickles run code when opened; export the model as ONNX or its coefficients as CSV",
    ".pickle": "pickles run code when opened; export the model as ONNX or its coefficients as CSV",
    ".joblib": "joblib files are pickles and run code when opened; export the model as ONNX or its "
               "coefficients as CSV",
    ".svg": "SVG figures can embed the plotted data and scripts; export PNG or PDF",
    ".gph": "Stata graphs embed the plotted data; export PNG or PDF",
    ".sqlite": "databases are microdata; export aggregated tables",
    ".db": "databases are microdata; export aggregated tables",
    ".feather": "export tables as CSV, Parquet or XLSX",
    ".exe": "executables cannot leave the workspace",
}

_MAGIC: dict[str, tuple[bytes, ...]] = {
    ".png": (b"\x89PNG\r\n\x1a\n",),
    ".jpg": (b"\xff\xd8\xff",),
    ".jpeg": (b"\xff\xd8\xff",),
    ".pdf": (b"%PDF-",),
    ".xlsx": (b"PK\x03\x04",),
    ".parquet": (b"PAR1",),
}

#: first bytes of formats that must never pass as text (executables, archives, images, pickles).
_BINARY_MARKERS = (b"\x7fELF", b"MZ", b"PK\x03\x04", b"\x1f\x8b", b"\x80\x04", b"\x80\x05", b"%PDF-",
                   b"\x89PNG")


def extension(name: str) -> str:
    return PurePosixPath(name).suffix.lower()


def kind_of(name: str) -> str:
    """The kind of ``name`` from its extension: table, figure, text, model, or ``blocked``/``unknown``."""
    ext = extension(name)
    if ext in BLOCKED:
        return "blocked"
    return KINDS.get(ext, "unknown")


def refusal(name: str, allowed: frozenset[str] | None = None) -> str | None:
    """Why a file called ``name`` may not leave at all (blocked, unknown or not allowed), else None.

    Decided from the name alone, so the gate can refuse before copying anything.
    """
    ext = extension(name)
    if ext in BLOCKED:
        return f"{ext} files are blocked: {BLOCKED[ext]}"
    if ext not in KINDS or (allowed is not None and ext not in allowed):
        return (f"file type {ext or '(none)'} is not allowed out of the workspace "
                f"(allowed: {', '.join(sorted(allowed if allowed is not None else KINDS))})")
    return None


def staged_refusal(path: Path, name: str, allowed: frozenset[str] | None = None) -> str | None:
    """Why the file at ``path``, submitted as ``name``, may not leave: its name (see :func:`refusal`),
    its first bytes contradicting its extension, a pickle in it, or a model file whose structure is
    refused (:func:`.models.model_refusal`); else None. Raises OSError if
    unreadable."""
    refused = refusal(name, allowed)
    if refused is not None:
        return refused
    with open(path, "rb") as fh:
        head = fh.read(HEAD_BYTES)
    for finding in check_type(name, head, allowed) + check_pickles(path, head):
        if finding.rule in {"file-type", "pickle"} and finding.status == Status.FAIL:
            return finding.message
    if kind_of(name) == "model":
        return model_refusal(path, name, head, path.stat().st_size)
    return None


def check_type(name: str, head: bytes, allowed: frozenset[str] | None = None) -> list[Finding]:
    """Findings about the type of a file called ``name`` whose first bytes are ``head``."""
    ext = extension(name)
    refused = refusal(name, allowed)
    if refused is not None:
        return [Finding("file-type", Status.FAIL, refused)]
    magic = _MAGIC.get(ext)
    if magic is not None and not any(head.startswith(m) for m in magic):
        return [Finding("file-type", Status.FAIL, f"the content of this file is not {ext[1:].upper()}")]
    if ext == ".parquet":
        return []
    if KINDS[ext] in {"table", "text", "code"} and ext != ".xlsx":
        if any(head.startswith(m) for m in _BINARY_MARKERS) or b"\x00" in head:
            return [Finding("file-type", Status.FAIL, f"this {ext} file holds binary content, not text")]
    return []
