"""Model files: pickles are refused by their content, safe formats go to review as kind ``model``.

A pickle runs code when it is loaded, and can carry any data. It is recognised by its bytes, not
its name: a raw pickle stream (protocol 2-5 header, or the protocol 0/1 opcodes at the start), and
any ZIP that holds one (PyTorch ``.pt``/``.pth``/``.ckpt`` files are ZIPs around ``data.pkl``;
``.npy`` members with object arrays are pickles too). Safe formats are recognised by their
structure: safetensors (a length-prefixed JSON header), ONNX (protobuf), skops (a ZIP without
pickles), XGBoost/LightGBM JSON, UBJ or text models. Whatever the format, a model needs a checker
(training records can hide in it); :mod:`.model_data` reads its strings, :mod:`.model_tensors` its
numbers, and the AI checks add their own rules to the ``model`` kind.
"""

from __future__ import annotations

import re
import struct
import zipfile
from pathlib import Path

from .model_data import scan_model
from .model_formats import onnx_problem, safetensors_problem
from .model_layout import lightgbm_problem, skops_problem, ubj_problem
from .model_tensors import check_tensors
from .result import Finding, Status

PICKLE_EXTENSIONS = frozenset({".pkl", ".pickle", ".joblib", ".pt", ".pth", ".ckpt", ".npz"})
_PICKLE_MEMBER = (".pkl", ".pickle", ".joblib", "data.pkl")
#: how protocol 0 and 1 pickles start (an empty dict or list, a global); never how text starts
_PROTO0 = (b"(dp0\n", b"(lp0\n", b"ccopy_reg\n", b"c__builtin__\n", b"cnumpy", b"(cnumpy", b"}q\x00", b"]q\x00",
           b"(dp1\n", b"(lp1\n")
#: protocol 0 GLOBAL opcode (``c<module>\n<name>\n``) followed by a PUT, MARK, TUPLE, NONE or REDUCE
_GLOBAL0 = re.compile(rb"c[A-Za-z_][\w.]*\n[A-Za-z_][\w.]*\n(?:p\d+\n|\(|\)|N|R|q)")
ZIP_MAGIC = b"PK\x03\x04"
#: a ZIP with more members than this is not inspected member by member: refused as an archive
MAX_MEMBERS = 10_000


def is_pickle(head: bytes) -> bool:
    """A pickle stream: ``\\x80`` + protocol 2..5 + a plausible opcode, or protocol 0/1 openings."""
    if len(head) >= 3 and head[0] == 0x80 and head[1] in (2, 3, 4, 5):
        return True
    return head.startswith(_PROTO0) or bool(_GLOBAL0.match(head))


def _npy_holds_objects(data: bytes) -> bool:
    if not data.startswith(b"\x93NUMPY"):
        return False
    header = data[10:10 + 4096]
    return b"'|O'" in header or b"'O'" in header


def zip_pickles(path: Path) -> str | None:
    """Why the ZIP at ``path`` carries a pickle (or cannot be inspected), else None."""
    try:
        with zipfile.ZipFile(path) as archive:
            members = archive.infolist()
            if len(members) > MAX_MEMBERS:
                return (f"it holds {len(members)} members, more than the {MAX_MEMBERS} the gate reads one by one (a "
                        "skops forest of about 2,000 trees or more: export fewer trees)")
            for member in members:
                name = member.filename.lower()
                if name.endswith(_PICKLE_MEMBER):
                    return f"it holds a pickle ({member.filename})"
                with archive.open(member) as fh:
                    start = fh.read(4096)
                if is_pickle(start):
                    return f"it holds a pickle ({member.filename})"
                if name.endswith(".npy") and _npy_holds_objects(start):
                    return f"it holds a NumPy object array, which is a pickle ({member.filename})"
                if start.startswith(ZIP_MAGIC):
                    return f"it holds another archive ({member.filename})"
    except (zipfile.BadZipFile, OSError, RuntimeError, ValueError, NotImplementedError) as exc:
        return f"it is a damaged or encrypted archive ({type(exc).__name__})"
    return None


def _safetensors(head: bytes, size: int) -> bool:
    if len(head) < 10:
        return False
    (length,) = struct.unpack("<Q", head[:8])
    return 2 <= length <= size - 8 and head[8:9] == b"{"


def _zip_names(path: Path) -> list[str]:
    try:
        with zipfile.ZipFile(path) as archive:
            return archive.namelist()
    except (zipfile.BadZipFile, OSError):
        return []


def model_format(path: Path, ext: str, head: bytes, size: int) -> str | None:
    """The safe model format of the file, or None when its bytes are not one."""
    if _safetensors(head, size):
        return "safetensors"
    if head.startswith(ZIP_MAGIC):
        names = _zip_names(path)
        return "skops" if "schema.json" in names else None
    if ext == ".onnx" and head[:1] == b"\x08":  # protobuf field 1 (ir_version), varint
        return "onnx"
    if ext == ".ubj" and head[:1] in (b"{", b"["):
        return "xgboost-ubj"
    if head.lstrip()[:1] == b"{":
        try:
            text = head.decode("utf-8")
        except UnicodeDecodeError:
            return None
        # "version" comes last in XGBoost's JSON: beyond the first bytes of a large model
        if '"learner"' in text and ('"version"' in text or '"gradient_booster"' in text):
            return "xgboost-json"
    if head.startswith(b"tree\nversion=v"):
        return "lightgbm"
    if ext == ".rds" and head[:2] in (b"\x1f\x8b", b"X\n", b"A\n", b"B\n"):
        return "rds"
    return None


def check_pickles(path: Path, head: bytes) -> list[Finding]:
    """Refuse a file whose bytes are, or hold, a pickle (whatever its name)."""
    if is_pickle(head):
        return [Finding("pickle", Status.FAIL, "this file is a pickle, which runs code when opened: export "
                                               "the model as ONNX, safetensors or skops, or its coefficients as CSV")]
    if head.startswith(ZIP_MAGIC):
        why = zip_pickles(path)
        if why:
            return [Finding("pickle", Status.FAIL, f"this file is a ZIP archive and {why}: pickles run code when "
                                                   "opened; export the model as ONNX, safetensors or skops")]
    return []


#: the format a model file's extension promises (a reader picks its loader by the name)
EXTENSION_FORMATS = {".onnx": "onnx", ".safetensors": "safetensors", ".skops": "skops", ".ubj": "xgboost-ubj"}


def model_refusal(path: Path, name: str, head: bytes, size: int) -> str | None:
    """Why a model file is refused whatever its review: its content is no safe format, is not the
    format its extension names, or is a malformed safetensors or ONNX file
    (:mod:`.model_formats`); else None."""
    ext = Path(name).suffix.lower()
    promised = EXTENSION_FORMATS.get(ext)
    if promised == "safetensors" or (promised is None and _safetensors(head, size)):
        why = safetensors_problem(path)
        return f"this is not a valid safetensors file: {why}" if why else None
    if promised == "onnx" and head[:1] == b"\x08":
        why = onnx_problem(path)
        return f"this ONNX model is refused: {why}" if why else None
    fmt = model_format(path, ext, head, size)
    if fmt is None:
        return (f"the content of {name} is not a model format the gate knows "
                "(safetensors, ONNX, skops, XGBoost/LightGBM JSON/UBJ/text)")
    if promised is not None and fmt != promised:
        return (f"{name} is named {ext} but its content is a {fmt} model: a reader would open it with the "
                f"wrong loader; name it after its format")
    try:
        why = {"skops": skops_problem, "xgboost-ubj": ubj_problem, "lightgbm": lightgbm_problem}.get(fmt, lambda _: None)(path)
    except (zipfile.BadZipFile, OSError, ValueError) as exc:
        why = f"it cannot be read in full ({type(exc).__name__})"
    return f"this {fmt} model is refused: {why}" if why else None


def check_model(path: Path, name: str, head: bytes, size: int, reference=None, declared: bool = False) -> list[Finding]:
    """Findings of a file of kind ``model`` (after :func:`check_pickles` found no pickle);
    ``reference`` returns the project's extract as numbers (:mod:`.model_reference`), or None;
    ``declared``: the request declares its training rows (the platform will attack it)."""
    why = model_refusal(path, name, head, size)
    if why is not None:
        return [Finding("file-type", Status.FAIL, why)]
    fmt = model_format(path, Path(name).suffix.lower(), head, size)
    return [Finding("model", Status.REVIEW, f"{fmt} model: a checker must confirm it holds no individual records "
                                            "(training data, support vectors, leaves of one person)"),
            *scan_model(path, fmt, declared=declared), *check_tensors(path, fmt, reference() if reference else None)]


def sniff_model_text(ext: str, head: bytes) -> bool:
    """A text file that is a model (kind ``model``, not text): an XGBoost ``.json``, or a LightGBM
    text model (``.txt``, LightGBM's own extension), whose numbers the model rules read."""
    if ext == ".json":
        return sniff_model_json(head)
    return ext == ".txt" and head.startswith(b"tree\nversion=v")


def sniff_model_json(head: bytes) -> bool:
    """A ``.json`` that is an XGBoost model (kind ``model``, not text)."""
    try:
        return '"learner"' in head.decode("utf-8") and head.lstrip()[:1] == b"{"
    except UnicodeDecodeError:
        return False


__all__ = ["check_model", "model_refusal", "check_pickles", "is_pickle", "model_format", "sniff_model_json",
           "sniff_model_text"]
