"""What a wheel must be, as an archive, before the package index serves it (checked at approval,
before its malware scan; tests/security/test_redteam11_packages.py).

An approved wheel reaches every workspace, and ``pip`` unpacks it with Python's ``zipfile``, which
reads some archives differently from ClamAV. The same rules as imported archives
(:mod:`pds_kernel.airlock.archive_rules`) therefore apply, plus a wheel's own:

* **every byte accounted for**: members laid end to end from the first byte, each local header
  saying what the central directory says, nothing before, between or after (a second archive
  there is read by one tool and not the other);
* **compression ClamAV unpacks**: stored, deflate or bzip2 (an LZMA member carrying the tests'
  signature passed the scan, and pip installed it);
* **plain, readable paths**: relative, no ``..``, no backslash, no invisible character, one member
  per name (ignoring case and Unicode form), no symbolic link, no encrypted member, and under a
  ``NAME-VERSION.data/`` folder only the install schemes pip knows (``purelib``, ``platlib``,
  ``scripts``, ``headers``, ``data``);
* **RECORD is the contents**: every member listed with its SHA-256 and size, and nothing listed
  that is not there (pip does not check it; the administrator's tools read it);
* **bounded**: at most :data:`MAX_MEMBERS` members, unpacked at most the scan's limit and
  :data:`MAX_RATIO` times the wheel's size, a METADATA of at most :data:`MAX_METADATA` bytes.

:func:`wheel_refusal` answers why a wheel is refused, or ``None``; :func:`startup_hooks` lists what
in a wheel runs without being imported (``.pth`` files, commands), recorded in the approval's audit
entry for the administrator.
"""

from __future__ import annotations

import base64
import csv
import hashlib
import io
import zipfile
import zlib
from pathlib import Path

from ..airlock import archive_rules as rules

#: members of one wheel (ClamAV's own default limit of files in an archive)
MAX_MEMBERS = 10_000
#: unpacked bytes past 1 MiB may be at most this many times the wheel's size
MAX_RATIO = 200
#: bytes of a wheel's METADATA
MAX_METADATA = 1024 * 1024
#: bytes of a wheel's RECORD (read whole before any budget: torch's, 16,000 rows, is 1.9 MB)
MAX_RECORD = 16 * 1024 * 1024
#: the folders of ``NAME-VERSION.data/`` pip installs (the install schemes)
SCHEMES = {"purelib", "platlib", "scripts", "headers", "data"}
_CHUNK = 1 << 20
#: data files (under ``NAME-VERSION.data/data/``, installed in the prefix) that Jupyter or IPython
#: read at start-up: server and notebook configuration (which loads extensions) and kernelspecs
#: (which shadow the platform's kernel): named in the approval (red team 20G)
JUPYTER_DATA = ("etc/jupyter/", "etc/ipython/", "share/jupyter/kernels/")


class _Refused(Exception):
    pass


def _path_refusal(name: str) -> str | None:
    if not name or name.startswith("/") or (len(name) > 1 and name[1] == ":"):
        return f"member {name[:200]!r} has an absolute path"
    if "\\" in name or any(part == ".." for part in name.split("/")):
        return f"member {name[:200]!r} climbs out of the install folder ('..' or a backslash)"
    top, _, rest = name.partition("/")
    if top.endswith(".data") and rest:
        scheme = rest.split("/", 1)[0]
        if scheme not in SCHEMES:
            return (f"member {name[:200]!r} is in {top}/{scheme[:50]}, which is not an install scheme "
                    f"({', '.join(sorted(SCHEMES))})")
    return rules.name_refusal(name)


def _kind_refusal(info: zipfile.ZipInfo) -> str | None:
    mode = (info.external_attr >> 16) & 0o170000
    if mode == 0o120000:
        return f"member {info.filename[:200]!r} is a symbolic link"
    if mode not in (0, 0o100000, 0o040000):
        return f"member {info.filename[:200]!r} is not a regular file"
    if info.flag_bits & 0x1:
        return f"member {info.filename[:200]!r} is encrypted: it cannot be scanned"
    if info.is_dir():
        return rules.folder_refusal(info)
    return rules.zip_method_refusal(info)


def _dist_info(names: list[str]) -> str:
    """The wheel's own ``.dist-info`` folder (at the top: vendored packages have theirs deeper)."""
    folders = {n.split("/")[0] for n in names if n.endswith(".dist-info/RECORD") and n.count("/") == 1}
    if len(folders) != 1:
        raise _Refused("no single .dist-info/RECORD")
    return folders.pop()


def _record(archive: zipfile.ZipFile, names: list[str]) -> dict[str, tuple[str, str]]:
    """The rows of the wheel's ``.dist-info/RECORD``: path -> (hash, size)."""
    record = f"{_dist_info(names)}/RECORD"
    if archive.getinfo(record).file_size > MAX_RECORD:  # zipfile reads no more than the size it declares
        raise _Refused(f"its RECORD is more than {MAX_RECORD} bytes")
    rows = {}
    text = archive.read(record).decode("utf-8", "replace")
    try:
        for row in csv.reader(io.StringIO(text)):
            if not row:
                continue
            if len(row) != 3 or row[0] in rows:
                raise _Refused(f"RECORD row {','.join(row)[:200]!r} is malformed or repeated")
            rows[row[0]] = (row[1], row[2])
    except csv.Error as exc:  # a field past csv's limit (128 KiB), a NUL byte
        raise _Refused(f"its RECORD cannot be read as CSV: {str(exc)[:200]}") from None
    rows.pop(record, None)
    return rows


def _digests(algorithm: str, data_hash) -> tuple[str, str]:
    """The member's digest as RECORD writes it (URL-safe base64), and in hexadecimal (which some
    real wheels write: gmsh 4.15.2)."""
    return (f"{algorithm}=" + base64.urlsafe_b64encode(data_hash.digest()).rstrip(b"=").decode(),
            f"{algorithm}={data_hash.hexdigest()}")


def _unpack(archive: zipfile.ZipFile, info: zipfile.ZipInfo, expected: str, budget: list[int],
            limit: int, packed: int) -> tuple[tuple[str, str], int]:
    """Read the member whole (lying sizes are caught), counting bytes against the limits; its
    digests (:func:`_digests`, the algorithm RECORD names, sha256 by default) and its size."""
    algorithm = expected.partition("=")[0] if expected.partition("=")[0] in ("sha256", "sha384", "sha512") \
        else "sha256"
    digest, size = hashlib.new(algorithm), 0
    with archive.open(info) as member:
        while chunk := member.read(_CHUNK):
            digest.update(chunk)
            size += len(chunk)
            budget[0] += len(chunk)
            if budget[0] > limit:
                raise _Refused(f"it unpacks to more than {limit} bytes (the scan's limit)")
            if budget[0] > _CHUNK and budget[0] > packed * MAX_RATIO:
                raise _Refused(f"it unpacks to more than {MAX_RATIO} times its size (a compression bomb?)")
    return _digests(algorithm, digest), size


def _check(path: Path, archive: zipfile.ZipFile, max_unpacked: int) -> None:
    infos = archive.infolist()
    if len(infos) > MAX_MEMBERS:
        raise _Refused(f"it holds more than {MAX_MEMBERS} members")
    layout = rules.zip_layout_refusal(path, archive)
    if layout is not None:
        raise _Refused(layout)
    seen = rules.MemberNames()
    for info in infos:
        reason = _path_refusal(info.filename) or _kind_refusal(info) or seen.add(info.filename, info.is_dir())
        if reason is not None:
            raise _Refused(reason)
        if info.filename.endswith(".dist-info/METADATA") and info.file_size > MAX_METADATA:
            raise _Refused(f"its METADATA is {info.file_size} bytes, more than {MAX_METADATA}")
    names = [i.filename for i in infos if not i.is_dir()]
    record = _record(archive, names)
    budget = [0]
    packed = max(path.stat().st_size, 1)
    own = {f"{_dist_info(names)}/{n}" for n in ("RECORD", "RECORD.jws", "RECORD.p7s")}
    for info in infos:
        if info.is_dir() or info.filename in own:  # a vendored package's RECORD is an ordinary file
            continue
        if info.filename not in record:
            raise _Refused(f"member {info.filename[:200]!r} is not listed in its RECORD")
        expected, expected_size = record.pop(info.filename)
        digests, size = _unpack(archive, info, expected, budget, max_unpacked, packed)
        if expected not in digests or str(size) != expected_size:
            raise _Refused(f"member {info.filename[:200]!r} is not what its RECORD says (hash or size)")
    if record:
        raise _Refused(f"its RECORD lists {sorted(record)[0][:200]!r}, which it does not hold")


def wheel_refusal(path: Path, max_unpacked: int) -> str | None:
    """Why the wheel at ``path`` may not be served (see the module docstring), or ``None``.
    ``max_unpacked``: the most bytes its members may unpack to (the scan's limit)."""
    path = Path(path)
    counted = rules.zip_entries_refusal(path, MAX_MEMBERS)  # before zipfile builds an object per entry
    if counted is not None:
        return counted
    try:
        with zipfile.ZipFile(path) as archive:
            _check(path, archive, max_unpacked)
    except _Refused as refused:
        return str(refused)
    except (zipfile.BadZipFile, zipfile.LargeZipFile, NotImplementedError, EOFError, ValueError, RuntimeError,
            OSError, zlib.error) as exc:  # a corrupt deflate or bzip2 stream ended the check: red team 13
        return f"the archive cannot be read: {str(exc)[:200]}"
    return None


def startup_hooks(path: Path) -> list[str]:
    """What the wheel at ``path`` installs that runs without being imported: ``.pth`` files (run
    by every interpreter that reads its site folder), commands (``.data/scripts``, console and
    GUI entry points) and Jupyter configuration or kernelspecs (:data:`JUPYTER_DATA`). For the
    approval's audit entry; the rules of :func:`wheel_refusal` hold."""
    hooks = []
    with zipfile.ZipFile(path) as archive:
        for name in archive.namelist():
            parts = name.split("/")
            site = parts[1:2] in (["purelib"], ["platlib"]) and parts[0].endswith(".data")
            if name.endswith(".pth") and (len(parts) == 1 or (site and len(parts) == 3)):
                hooks.append(f"{name} (runs at interpreter start-up where it is a site folder)")
            elif parts[0].endswith(".data") and parts[1:2] == ["data"] and "/".join(parts[2:]).startswith(JUPYTER_DATA):
                hooks.append(f"{name} (Jupyter or IPython configuration or a kernelspec: read at the next start)")
            elif parts[0].endswith(".data") and parts[1:2] == ["scripts"] and len(parts) == 3:
                hooks.append(f"{name} (a command)")
            elif name.endswith(".dist-info/entry_points.txt") and len(parts) == 2:
                text = archive.read(name).decode("utf-8", "replace")
                section = ""
                for line in text.splitlines():
                    line = line.strip()
                    if line.startswith("["):
                        section = line.strip("[]").strip()
                    elif section in ("console_scripts", "gui_scripts") and "=" in line:
                        hooks.append(f"{line.split('=')[0].strip()[:100]} (a command: {section})")
    return hooks
