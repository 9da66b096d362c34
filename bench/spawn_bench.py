"""Workspace start time on the local hub: sandboxed project server vs a plain notebook server.

Two real hubs run one after the other with the same configuration (``pds_kernel.hub.local``);
the peer hub only swaps the spawner for JupyterHub's ``SimpleLocalProcessSpawner`` (a plain
``jupyterhub-singleuser`` on a TCP port, no sandbox, no bridges, no registry check). Measured
through the hub REST API, as a user's "start" button does:

* start → ready (the hub reports the server ready) and start → usable (JupyterLab's page is served
  through the proxy with the user's token, as the browser loads it next), one server at a time
  (median of 10; 3 in quick mode);
* N users starting at once (20; 5 in quick mode): time until all are usable, and the peak memory
  (RSS) of the hub's whole process tree.

Each user has an approved hub account (``provision_account``, as ``pds hub account add`` makes):
the hub refreshes the user's authentication before every start and refuses users without one.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import fields
from datetime import date, timedelta
from pathlib import Path

import polars as pl
import psutil
import requests
import yaml

PROJECT = "bench-proj"
PASSWORD = "bench-password-1"


def _free_port_block(size: int = 4) -> int:
    for _ in range(200):
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            base = s.getsockname()[1]
        try:
            for port in range(base, base + size):
                with socket.socket() as probe:
                    probe.bind(("127.0.0.1", port))
            return base
        except OSError:
            continue
    raise RuntimeError("no free port block")


class _Hub:
    """One hub in ``root``; ``plain=True`` uses the unsandboxed peer spawner."""

    def __init__(self, root: Path, users: list[str], plain: bool):
        from pds_kernel.registry import Registry
        from pds_kernel.runtime import Runtime
        from pds_kernel.settings import Paths, load_settings

        self.root = root
        self.port = _free_port_block()
        paths = {f.name: str(root / f.name) for f in fields(Paths)}
        config = root / "pds.yaml"
        config.write_text(yaml.safe_dump({"paths": paths, "hub": {"port": self.port}}))
        self.settings = load_settings(config, environ={})
        runtime = Runtime(self.settings)
        registry = Registry.from_runtime(runtime)
        today = date.today()
        registry.upsert_project("bench", PROJECT, title="bench", start_date=today,
                                end_date=today + timedelta(days=30), cpu_limit=1.0, dask_workers=1)
        extract = self.settings.paths.projects / PROJECT / "extract"
        extract.mkdir(parents=True, exist_ok=True)
        pl.DataFrame({"PERSON_ID": ["a", "b"], "n": [1, 2]}).write_parquet(extract / "T.parquet")
        # published as a build publishes it: a workspace mounts only the extract the audit trail records
        sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
        from published import publish_by_hand

        publish_by_hand(runtime, PROJECT)
        for user in users:
            registry.upsert_user("bench", user)
            registry.add_member("bench", PROJECT, user, "researcher", today + timedelta(days=10))
        runtime.close()
        hub_config = root / "jupyterhub_config.py"
        lines = ["from pds_kernel.hub.local import configure", "configure(c)"]
        if plain:
            lines += ["c.JupyterHub.spawner_class = 'simple'", "c.SimpleLocalProcessSpawner.args = ['--allow-root']",
                      f"c.SimpleLocalProcessSpawner.home_dir_template = {str(root / 'plain' / '{username}')!r}"]
        hub_config.write_text("\n".join(lines) + "\n")
        from pds_kernel.cli.hub_cmd import hub_environment

        env = hub_environment(config, None)
        env["PDS_HUB_AIRLOCK"] = "off"
        self.log = open(root / "hub.log", "ab")
        self.proc = subprocess.Popen([sys.executable, "-m", "jupyterhub", "-f", str(hub_config)], env=env,
                                     cwd=root, stdout=self.log, stderr=subprocess.STDOUT, start_new_session=True)
        from pds_kernel.hub.local import sync_token

        self.http = requests.Session()
        self.http.headers["Authorization"] = f"token {sync_token(self.settings)}"
        self.api = f"http://127.0.0.1:{self.port}/hub/api"
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                if requests.get(self.api + "/", timeout=2).ok:
                    break
            except requests.ConnectionError:
                time.sleep(0.3)
        else:
            self.close()
            raise RuntimeError("hub did not start: " + (root / "hub.log").read_text()[-2000:])
        from pds_kernel.hub.local import provision_account

        runtime = Runtime(self.settings)
        registry = Registry.from_runtime(runtime)
        secrets = {user: provision_account(self.settings, registry, user, PASSWORD, actor="bench")
                   for user in users}
        runtime.close()
        self.http.post(self.api + "/users", json={"usernames": users}, timeout=30)
        self.tokens = {user: self._user_token(user, secret) for user, secret in secrets.items()}

    def _user_token(self, user: str, secret: str) -> str:
        """Log in as ``user`` (password and second factor, as in a browser) and make an API token."""
        import onetimepass

        session = requests.Session()
        base = f"http://127.0.0.1:{self.port}/hub"
        page = session.get(base + "/login", timeout=30).text
        match = re.search(r'name="_xsrf"\s+value="([^"]+)"', page)
        xsrf = match.group(1) if match else session.cookies.get("_xsrf", "")
        for _ in range(3):  # a code read just before its 30-second window turns may arrive too late
            if 30 - time.time() % 30 < 5:
                time.sleep(30 - time.time() % 30 + 0.2)
            code = onetimepass.get_totp(secret, as_string=True).decode()
            login = session.post(base + "/login?next=/hub/home", timeout=30, allow_redirects=False,
                                 data={"_xsrf": xsrf, "username": user, "password": PASSWORD, "2fa": code})
            if login.status_code == 302:
                break
            time.sleep(30 - time.time() % 30 + 0.2)  # the hub accepts each code once: wait for the next
        else:
            raise RuntimeError(f"login of {user} failed: {login.status_code}")
        xsrf = session.cookies.get("_xsrf", xsrf)
        response = session.post(f"{base}/api/users/{user}/tokens", headers={"X-XSRFToken": xsrf},
                                json={"note": "bench"}, timeout=30)
        response.raise_for_status()
        return response.json()["token"]

    def start_and_wait(self, user: str, timeout: float = 120, poll: float = 0.1) -> tuple[float, float]:
        """Seconds from the start request to ready, and to JupyterLab's page served (usable), asking
        every ``poll`` seconds (20 users asking often would load the hub they measure)."""
        started = time.monotonic()
        response = self.http.post(f"{self.api}/users/{user}/servers/{PROJECT}", timeout=timeout)
        if response.status_code >= 400:
            raise RuntimeError(f"start of {user} refused: {response.status_code} {response.text[:300]}")
        ready = None
        while time.monotonic() - started < timeout:
            server = self.http.get(f"{self.api}/users/{user}", timeout=30).json()["servers"].get(PROJECT)
            if server and server["ready"]:
                ready = time.monotonic() - started
                break
            time.sleep(poll)
        if ready is None:
            raise TimeoutError(f"{user} not ready")
        lab = f"http://127.0.0.1:{self.port}/user/{user}/{PROJECT}/lab"
        headers = {"Authorization": f"token {self.tokens[user]}"}
        while time.monotonic() - started < timeout:
            page = requests.get(lab, headers=headers, timeout=30, allow_redirects=False)
            if page.status_code == 200 and "jupyter-config-data" in page.text:
                return ready, time.monotonic() - started
            time.sleep(poll)
        raise TimeoutError(f"{user}: JupyterLab not served (last answer {page.status_code})")

    def stop_server(self, user: str) -> None:
        self.http.delete(f"{self.api}/users/{user}/servers/{PROJECT}", timeout=60)
        for _ in range(300):
            if PROJECT not in self.http.get(f"{self.api}/users/{user}", timeout=30).json()["servers"]:
                return
            time.sleep(0.1)

    def tree_rss_mb(self) -> float:
        proc = psutil.Process(self.proc.pid)
        total = 0
        for p in [proc, *proc.children(recursive=True)]:
            try:
                total += p.memory_info().rss
            except psutil.Error:
                pass
        return total / 2**20

    def close(self) -> None:
        os.killpg(self.proc.pid, signal.SIGTERM)
        try:
            self.proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()
        self.log.close()


def _lockdown_refusals(root: Path, limit: int = 3) -> list[str]:
    """The first distinct refusals the workspaces' lockdown logged (why a page was not served)."""
    seen: list[str] = []
    for log in sorted((root / "state" / "logs").glob("*.log")):
        for line in log.read_text(errors="replace").splitlines():
            if line.startswith("lockdown:") and "PDS lockdown active" not in line:
                text = line.split(":", 2)[-1].strip()[:160]
                if text not in seen:
                    seen.append(text)
    return seen[:limit]


def _measure(plain: bool, runs: int, crowd: int) -> dict:
    root = Path(tempfile.mkdtemp(prefix="pdsb", dir="/tmp"))
    users = [f"u{i:02d}" for i in range(max(crowd, runs, 1))]
    hub = _Hub(root, users, plain)
    try:
        single, single_usable = [], []
        # One user per run: each start spends a reservation of the workspace's daily budget of
        # bytes shown (4 of 32 MiB, lost at stop), so one user started ten times is refused.
        for user in users[:runs]:
            ready, usable = hub.start_and_wait(user)
            single.append(ready)
            single_usable.append(usable)
            hub.stop_server(user)
        times: dict[str, tuple[float, float]] = {}
        peak = [hub.tree_rss_mb()]
        done = threading.Event()

        def sample():
            while not done.is_set():
                peak.append(hub.tree_rss_mb())
                time.sleep(0.5)

        sampler = threading.Thread(target=sample, daemon=True)
        sampler.start()
        started = time.monotonic()
        threads = [threading.Thread(target=lambda u=u: times.__setitem__(u, hub.start_and_wait(u, poll=0.5)))
                   for u in users[:crowd]]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        crowd_wall = time.monotonic() - started
        time.sleep(1)
        done.set()
        sampler.join()
        for user in users[:crowd]:
            hub.stop_server(user)
        return {"median": statistics.median(single), "all": single,
                "median_usable": statistics.median(single_usable), "all_usable": single_usable,
                "crowd_wall": crowd_wall, "crowd_ready": len(times),
                "crowd_last_ready": max((t[0] for t in times.values()), default=0.0), "peak_rss_mb": max(peak),
                "refusals": _lockdown_refusals(root)}
    except BaseException:
        print("\n".join(line for line in (root / "hub.log").read_text().splitlines() if "GET /hub/api/users" not in line)[-6000:], file=sys.stderr)
        raise
    finally:
        hub.close()
        shutil.rmtree(root, ignore_errors=True)


def run(out_dir: Path, quick: bool) -> dict:
    runs, crowd = (3, 5) if quick else (10, 20)
    sandbox = _measure(False, runs, crowd)
    plain = _measure(True, runs, crowd)

    def row(name, value, unit, peer_value, note):
        return {"name": name, "value": round(value, 2), "unit": unit, "peer": "plain jupyterhub-singleuser",
                "peer_value": round(peer_value, 2), "ratio": round(peer_value / value, 2) if value else None,
                "note": note}

    def runs_note(key):
        return (f"median of {runs}; ours {', '.join(f'{t:.2f}' for t in sandbox[key])}, "
                f"peer {', '.join(f'{t:.2f}' for t in plain[key])}")

    rows = [
        row("start → usable: JupyterLab served (median)", sandbox["median_usable"], "s",
            plain["median_usable"], runs_note("all_usable")),
        row("start → ready (median)", sandbox["median"], "s", plain["median"], runs_note("all")),
        row(f"{crowd} users at once: all usable", sandbox["crowd_wall"], "s", plain["crowd_wall"],
            f"{sandbox['crowd_ready']}/{crowd} usable (peer {plain['crowd_ready']}/{crowd}); "
            f"last ready at {sandbox['crowd_last_ready']:.1f} s (peer {plain['crowd_last_ready']:.1f} s)"),
        row(f"{crowd} users at once: peak RSS of hub tree", sandbox["peak_rss_mb"], "MiB",
            plain["peak_rss_mb"], "hub + proxy + every server"),
    ]
    markdown = ("Local hub, this machine. Sandbox = SandboxSpawner (bubblewrap, bridges, registry check, "
                "lockdown); plain = SimpleLocalProcessSpawner on the same hub configuration. "
                "Ratio = plain / sandbox (≥ 1.0: the sandbox is at least as fast or as small). Usable = "
                "JupyterLab's page served through the proxy with the user's token (what the browser "
                "loads next). The hub's API is asked every 0.1 s for one user, every 0.5 s for each of "
                "the crowd (faster polling by 20 clients loads the hub being measured).")
    if sandbox["refusals"]:
        markdown += " The lockdown refused, in this run: " + "; ".join(f"`{r}`" for r in sandbox["refusals"]) + "."
    return {"title": "Workspace start (local hub)", "rows": rows, "markdown": markdown}


if __name__ == "__main__":
    result = run(Path("."), quick="--quick" in sys.argv)
    for r in result["rows"]:
        print(f"{r['name']}: {r['value']} {r['unit']} (plain {r['peer_value']}, ratio {r['ratio']}; {r['note']})")
