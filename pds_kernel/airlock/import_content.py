"""What an imported file, or a member of an imported archive, may hold, judged by all its bytes.

Used by :mod:`.imports_scan`, which judged a file by its first 4 KiB and an archive member by its
name only (red team 13, tests/security/test_redteam13_imports.py; all of these got through):

* **a member is a type the import accepts, or text**: its extension is one of
  :data:`.imports_scan.IMPORT_KINDS` and its bytes are what that type says (a PNG starts as a PNG,
  a table or code is text), or it has another name (``LICENSE``, ``Makefile``, ``.gitignore``) and
  is text. An executable, a shared library or any other binary member came in behind a listing
  that showed its name only, where the same file uploaded alone was refused;
* **text is text to its last byte**: no NUL byte anywhere and no binary first bytes (a ``.py``
  whose first 4 KiB were comments carried an ELF after them);
* **only an archive may end with a ZIP**: a PNG, a PDF, a Parquet file or a CSV with a ZIP behind
  it opens with ``zipfile`` in the workspace, whose members no checker saw listed; ClamAV did not
  unpack such a ZIP's LZMA member, so the test signature in it passed the scan.

:class:`Content` takes the bytes in chunks (the archive listing reads every member once anyway) and
answers the reason to refuse, or ``None``.
"""

from __future__ import annotations

from pathlib import PurePosixPath

from . import archive_rules as rules

#: first bytes of formats that are never text: executables (ELF, PE, Mach-O, Java classes,
#: WebAssembly), archives and compressed streams, pickles, and the binary types the import accepts
BINARY_MARKERS = (b"\x7fELF", b"MZ", b"\xca\xfe\xba\xbe", b"\xfe\xed\xfa\xce", b"\xfe\xed\xfa\xcf",
                  b"\xce\xfa\xed\xfe", b"\xcf\xfa\xed\xfe", b"\x00asm", b"PK\x03\x04", b"\x1f\x8b",
                  b"\x80\x02", b"\x80\x03", b"\x80\x04", b"\x80\x05", b"%PDF-", b"\x89PNG", b"PAR1")
#: extension -> first bytes, for the binary types the import accepts (anything else must be text)
BINARY_TYPES = {".parquet": (b"PAR1",), ".pdf": (b"%PDF-",), ".png": (b"\x89PNG\r\n\x1a\n",)}
HEAD = 4096


def extension(name: str) -> str:
    return PurePosixPath(name.lower()).suffix


class Content:
    """The bytes of one file or member called ``name`` (its last path part gives its type), in
    chunks. ``member``: a member of an archive (its name may be any extension, judged as text)."""

    def __init__(self, name: str, *, member: bool):
        self.name, self.member = name, member
        self.head, self.tail, self.nul = b"", b"", False

    def feed(self, chunk: bytes) -> None:
        if len(self.head) < HEAD:
            self.head += chunk[:HEAD - len(self.head)]
        self.tail = (self.tail + chunk)[-rules.TAIL:]
        self.nul = self.nul or b"\x00" in chunk

    def refusal(self) -> str | None:
        """Why these bytes may not come in under this name (``None``: they may)."""
        what = f"member {self.name[:200]!r}" if self.member else self.name[:200]
        magic = BINARY_TYPES.get(extension(self.name))
        if magic is not None:
            if not any(self.head.startswith(m) for m in magic):
                return f"the content of {what} is not {extension(self.name)[1:].upper()}"
        elif self.nul or any(self.head.startswith(m) for m in BINARY_MARKERS):
            kind = "neither text nor a type the import accepts (.csv, .py, .png, .pdf, .parquet...)"
            return f"{what} holds binary content: it is {kind}; import files a checker can read"
        if not self.member and rules.nested_zip_refusal(self.name, self.tail) is not None:
            return (f"{what} ends with a ZIP archive, which zipfile would open in the workspace unlisted: "
                    "import the file without what follows it, and the archive's files as an archive")
        return None
