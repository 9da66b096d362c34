"""Run INSIDE a sandbox (its source is passed to ``python -c``): try every way out, record each.

Reads a JSON config from argv[1]; writes ``{"attempts": [...], "controls": [...]}`` to
``/home/jovyan/probe.json``. An attempt is something that must fail; a control is something that
must work (so that a probe that cannot run at all does not pass as "everything failed").
Standard library only: the probe must not depend on what it tests.
"""

import json
import os
import socket
import sys

config = json.loads(sys.argv[1])
attempts = []
controls = []


def attempt(label, func):
    try:
        detail = func()
        attempts.append({"label": label, "failed": False, "detail": repr(detail)[:200]})
    except Exception as exc:  # every failure counts; which one is recorded
        attempts.append({"label": label, "failed": True, "detail": f"{type(exc).__name__}: {exc}"[:200]})


def control(label, func):
    try:
        detail = func()
        controls.append({"label": label, "ok": True, "detail": repr(detail)[:200]})
    except Exception as exc:
        controls.append({"label": label, "ok": False, "detail": f"{type(exc).__name__}: {exc}"[:200]})


def tcp(host, port):
    def go():
        with socket.create_connection((host, port), timeout=2) as s:
            s.sendall(b"probe\n")
            data = s.recv(100)
            if not data:
                raise ConnectionError("connected but nothing came back")
            return data
    return go


def udp_to(host, port):
    def go():
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            s.settimeout(2)
            s.sendto(b"probe", (host, port))
            return s.recvfrom(100)  # the host listener answers: a reply means we got out
    return go


def read(path):
    def go():
        with open(path, "rb") as f:
            return f.read(16)
    return go


def listdir(path):
    def go():
        entries = os.listdir(path)
        if not entries:
            raise FileNotFoundError(f"{path} is empty")
        return entries
    return go


def write(path):
    def go():
        with open(path, "wb") as f:
            f.write(b"x")
        return path
    return go


def abstract_unix(name):
    def go():
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
            s.settimeout(2)
            s.connect("\0" + name)
            s.sendall(b"probe\n")
            return s.recv(100)
    return go


def resolve(name):
    return lambda: socket.getaddrinfo(name, 80)


def signal_pid(pid):
    def go():
        os.kill(pid, 0)
        return pid
    return go


def raw_socket():
    return socket.socket(socket.AF_PACKET, socket.SOCK_RAW)


def allocate(megabytes):
    """In a child process: beyond the limit the kernel kills it (cgroup) or it gets MemoryError."""
    def go():
        import subprocess
        code = subprocess.run([sys.executable, "-c",
                               f"b = bytearray({megabytes} * 1024 * 1024); b[::4096] = b'x' * len(b[::4096])"],
                              capture_output=True).returncode
        if code != 0:
            raise MemoryError(f"allocation failed, exit code {code}")
        return code
    return go


def foreign_processes():
    mine = {int(p) for p in os.listdir("/proc") if p.isdigit()}
    if len(mine) > 10:
        return sorted(mine)
    raise PermissionError(f"only {len(mine)} processes visible: {sorted(mine)}")


# ---- network -----------------------------------------------------------------------------------
for host, port in config["tcp"]:
    attempt(f"tcp {host}:{port}", tcp(host, port))
for host, port in config["udp"]:
    attempt(f"udp {host}:{port}", udp_to(host, port))
attempt("dns lookup example.org", resolve("example.org"))
attempt("dns lookup of the host name", resolve(config["hostname"]))
for name in config["abstract"]:
    attempt(f"abstract unix socket @{name}", abstract_unix(name))
attempt("raw packet socket", raw_socket)
# ---- files -------------------------------------------------------------------------------------
for label, path in config["secrets"].items():
    attempt(f"read {label} ({path})", read(path))
for path in config["host_dirs"]:
    attempt(f"list {path}", listdir(path))
for path in ("/etc/passwd", "/etc/shadow", "/etc/resolv.conf", "/root/.bashrc",
             "/var/log/dpkg.log", os.path.join(config["repo"], "README.md"),
             os.path.join(config["repo"], "pds.yaml")):
    attempt(f"read {path}", read(path))


def hosts_names_only_localhost():
    with open("/etc/hosts") as f:
        names = {n for line in f if not line.startswith("#") for n in line.split()[1:]}
    if names != {"localhost"}:
        raise ValueError(f"/etc/hosts names {sorted(names)}")
    return names


control("/etc/hosts is the sandbox's own: localhost only", hosts_names_only_localhost)
attempt("resolve a host name of the machine's /etc/hosts", lambda: socket.gethostbyname(config["host_alias"]))
existing = config["data_file"]
attempt("write a new file in /data", write("/data/new.txt"))
attempt("overwrite a file of /data", write(existing))
attempt("delete a file of /data", lambda: os.unlink(existing))
attempt("rename a file of /data", lambda: os.rename(existing, "/data/renamed"))
attempt("write at /", write("/evil"))
attempt("write in /usr", write("/usr/evil"))
attempt("write in the Python environment", write(os.path.join(sys.prefix, "evil")))
attempt("write in /etc", write("/etc/evil"))
# ---- processes and privileges ------------------------------------------------------------------
attempt("see host processes in /proc", foreign_processes)
attempt(f"signal host process {config['host_pid']}", signal_pid(config["host_pid"]))
attempt("read a host process's environment", read(f"/proc/{config['host_pid']}/environ"))
attempt("chroot", lambda: os.chroot("/tmp"))
attempt("set the host name", lambda: socket.sethostname("evil"))
if config.get("allocate_mb"):
    attempt(f"allocate {config['allocate_mb']} MB (over the memory limit)", allocate(config["allocate_mb"]))
# ---- controls: what must work ------------------------------------------------------------------
control("read the project's extract", read(existing))
control("list /data", listdir("/data"))
control("write the home", write("/home/jovyan/control.txt"))
control("write /tmp", write("/tmp/control.txt"))
control("loopback inside the sandbox", lambda: socket.create_server(("127.0.0.1", 0)).close())
for line in open("/proc/self/status"):
    if line.startswith(("CapEff", "NoNewPrivs")):
        key, value = line.split(":")
        if key == "CapEff":
            control("no effective capabilities", (lambda v=value: None if int(v.strip(), 16) == 0 else 1 / 0))
        else:
            control("no new privileges", (lambda v=value: None if v.strip() == "1" else 1 / 0))

with open("/home/jovyan/probe.json", "w") as out:
    json.dump({"attempts": attempts, "controls": controls, "uid": os.getuid(),
               "root": sorted(os.listdir("/")),
               "repo": sorted(os.listdir(config["repo"])) if os.path.isdir(config["repo"]) else []},
              out, indent=1)
