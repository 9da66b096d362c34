"""The seccomp filter compiles with libseccomp and names every call it promises to deny."""

from __future__ import annotations

import os
import platform

import pytest

from pds_kernel.sandbox import seccomp


def _pfc() -> str:
    fd = os.memfd_create("pfc", 0)
    with open(fd, "w+b") as out:
        seccomp.build_filter().export_pfc(out)
        out.seek(0)
        return out.read().decode()


@pytest.mark.skipif(platform.machine() != "x86_64", reason="the names below are those of x86-64")
def test_filter_names_every_denied_call():
    text = _pfc()
    for name in ("keyctl", "add_key", "request_key", "bpf", "perf_event_open", "ptrace", "setns", "mount",
                 "umount2", "open_tree", "fsopen", "init_module", "finit_module", "kexec_load", "userfaultfd",
                 "io_uring_setup", "open_by_handle_at", "unshare", "clone", "clone3", "personality", "ioctl"):
        assert f'# filter for syscall "{name}"' in text, name
    assert "action ERRNO(38)" in text  # clone3: ENOSYS, so the C library falls back to clone
    assert "action ALLOW" in text  # the default: everything else runs


def test_program_is_whole_bpf_instructions():
    program = seccomp.build_bpf()
    assert len(program) > 8 * 50 and len(program) % 8 == 0
