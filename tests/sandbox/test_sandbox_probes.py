"""The escape probes detect what they look for: run OUTSIDE any sandbox, the attempts the host
allows succeed. (Inside the sandbox they must all fail: tests/security/test_sandbox_escape.py.)"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from pds_kernel.sandbox import probes
from pds_kernel.sandbox.probing import parse_output

#: attempts an ordinary host process may make (no mount, no traffic, nothing left behind);
#: unprivileged user namespaces are allowed on the machines we test on
HOST_ALLOWS = ["probe_unshare_user", "probe_clone_newuser", "probe_keyctl", "probe_add_key",
               "probe_perf_event_open", "probe_userfaultfd", "probe_personality", "probe_ptrace",
               "probe_host_processes"]
ROOT_ALLOWS = ["probe_core_pattern", "probe_proc_sys_writable", "probe_bpf", "probe_mknod"]


def _run_outside(only: list[str], forbidden: dict[str, str] | None = None) -> dict[str, bool]:
    config = {"only": only, "forbidden_paths": forbidden or {}, "forbidden_strings": [], "max_processes": 1024}
    proc = subprocess.run([sys.executable, "-I", "-c", Path(probes.__file__).read_text()],
                          input=json.dumps(config) + "\n\n", capture_output=True, text=True, timeout=120,
                          cwd="/tmp")
    assert probes.READY in proc.stdout and probes.END in proc.stdout, proc.stdout + proc.stderr
    return {r.name: r.succeeded for r in parse_output(proc.stdout)}


def test_probes_detect_attempts_the_host_allows(tmp_path):
    secret = tmp_path / "secret.txt"
    secret.write_text("x")
    only = HOST_ALLOWS + (ROOT_ALLOWS if os.geteuid() == 0 else []) + ["read a host file"]
    results = _run_outside(only, {"a host file": str(secret)})
    missed = [name for name, succeeded in results.items() if not succeeded]
    assert len(results) == len(only)
    assert not missed, f"these probes did not detect an allowed attempt: {missed}"


def test_unknown_probe_names_are_refused():
    proc = subprocess.run([sys.executable, "-I", "-c", Path(probes.__file__).read_text()],
                          input=json.dumps({"only": ["probe_nope"]}) + "\n", capture_output=True, text=True,
                          timeout=60)
    assert proc.returncode != 0 and "unknown probes" in proc.stderr
