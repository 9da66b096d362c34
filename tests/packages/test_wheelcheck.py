"""Controls of the wheel archive rules (pds_kernel/packages/wheelcheck.py): real wheels, and the
ways real wheels are written, pass them (the attacks they refuse are in
tests/security/test_redteam11_packages.py)."""

from __future__ import annotations

import base64
import ensurepip
import hashlib
import io
import zipfile
from pathlib import Path

import pytest

from pds_kernel.packages.wheelcheck import startup_hooks, wheel_refusal

LIMIT = 1 << 30
BUNDLED = sorted((Path(ensurepip.__file__).parent / "_bundled").glob("*.whl"))


@pytest.mark.parametrize("wheel", BUNDLED, ids=[w.name for w in BUNDLED])
def test_the_wheels_bundled_with_python_pass(wheel):
    assert wheel_refusal(wheel, LIMIT) is None


def test_setuptools_pth_file_is_named_as_a_startup_hook():
    (setuptools,) = [w for w in BUNDLED if w.name.startswith("setuptools-")] or [None]
    if setuptools is None:
        pytest.skip("this Python bundles no setuptools wheel")
    assert any(h.startswith("distutils-precedence.pth") for h in startup_hooks(setuptools))


def _record(files: dict[str, bytes], dist: str, *, hexadecimal: bool = False) -> bytes:
    lines = []
    for name, data in files.items():
        digest = hashlib.sha256(data)
        value = digest.hexdigest() if hexadecimal else base64.urlsafe_b64encode(digest.digest()).rstrip(b"=").decode()
        lines.append(f"{name},sha256={value},{len(data)}")
    return ("\n".join([*lines, f"{dist}/RECORD,,"]) + "\n").encode()


def _wheel(path: Path, files: dict[str, bytes], *, hexadecimal: bool = False, seekable: bool = True) -> Path:
    dist = "pds_ok-1.0.dist-info"
    files = {**files, f"{dist}/METADATA": b"Metadata-Version: 2.1\nName: pds-ok\nVersion: 1.0\n",
             f"{dist}/WHEEL": b"Wheel-Version: 1.0\nRoot-Is-Purelib: true\nTag: py3-none-any\n"}
    files[f"{dist}/RECORD"] = _record(files, dist, hexadecimal=hexadecimal)
    buffer = io.BytesIO()

    class Stream(io.RawIOBase):  # a pipe: zipfile writes data descriptors after each member
        def writable(self):
            return True

        def write(self, chunk):
            return buffer.write(chunk)

    with zipfile.ZipFile(buffer if seekable else Stream(), "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for name, data in files.items():
            archive.writestr(name, data)
    path.write_bytes(buffer.getvalue())
    return path


def test_a_record_in_hexadecimal_passes(tmp_path):
    """gmsh 4.15.2 writes its RECORD's hashes in hexadecimal: the same hash, accepted."""
    assert wheel_refusal(_wheel(tmp_path / "w.whl", {"pds_ok/__init__.py": b"x = 1\n"}, hexadecimal=True), LIMIT) is None


def test_a_vendored_packages_record_is_an_ordinary_member(tmp_path):
    """setuptools, bleach, ray vendor packages with their own ``.dist-info/RECORD``, listed in the
    wheel's RECORD like any file."""
    files = {"pds_ok/__init__.py": b"x = 1\n", "pds_ok/_vendor/dep-1.0.dist-info/RECORD": b"dep/__init__.py,,\n"}
    assert wheel_refusal(_wheel(tmp_path / "w.whl", files), LIMIT) is None


def test_data_descriptors_pass(tmp_path):
    """A wheel written to a stream (sizes after each member, in data descriptors)."""
    wheel = _wheel(tmp_path / "w.whl", {"pds_ok/__init__.py": b"x = 1\n" * 100}, seekable=False)
    with zipfile.ZipFile(wheel) as archive:
        assert all(i.flag_bits & 0x08 for i in archive.infolist())
    assert wheel_refusal(wheel, LIMIT) is None

