"""What ordinary JupyterLab use costs in the lockdown's budget of bytes shown (docs/isolation.md).

A real notebook server started the platform's way (``pds_kernel.sandbox.notebook_server``, the
server and ledger of ``tests/sandbox/lockdown_server.py``) reserves byte by byte from the ledger, so
the ledger's total is exactly what was counted; Debian's Chromium, driven by Playwright, does what
a researcher does. The "peer" is the default budget (32 MiB a day): ratio = how many times the
activity fits in one day's budget (per hour for the rows in bytes per hour: 24 h / that).
"""

from __future__ import annotations

import shutil
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
CHROMIUM = Path("/usr/bin/chromium")
DAY_BUDGET = 32 * 1024 * 1024
PLOT = ("import matplotlib.pyplot as plt\nimport numpy as np\nplt.figure(figsize=(8, 4))\n"
        "plt.bar(np.arange(24), np.arange(24) % 7 * 10.0)\nplt.title('claims per month')\nplt.show()")


def _row(name: str, value: float, unit: str, per_hour: bool = False, note: str = "") -> dict:
    mb = value / 1e6
    fits = DAY_BUDGET / (value * 24) if per_hour and value else (DAY_BUDGET / value if value else None)
    return {"name": name, "value": round(mb, 3), "unit": unit, "peer": "budget 32 MiB/day",
            "peer_value": round(DAY_BUDGET / 1e6, 1), "ratio": round(fits, 1) if fits else "", "note": note}


def run(out_dir: Path, quick: bool) -> dict:
    if not CHROMIUM.exists():
        raise RuntimeError("chromium is not installed (make system-deps)")
    sys.path.insert(0, str(REPO / "tests" / "sandbox"))
    from dask.distributed import Client, LocalCluster
    from lockdown_server import LedgerHost, free_port, start_server
    from playwright.sync_api import sync_playwright

    from pds_kernel.served_bytes import ServedBytes

    idle = 60 if quick else 300
    home = out_dir / "home"
    home.mkdir(parents=True)
    shutil.copy(REPO / "pds_kernel" / "hub" / "notebooks" / "01-claims-per-month-dask.ipynb", home / "example.ipynb")
    dash_port = free_port()
    cluster = LocalCluster(n_workers=1, threads_per_worker=1, processes=False,
                           dashboard_address=f"127.0.0.1:{dash_port}")
    client = Client(cluster)
    ledger = LedgerHost(out_dir / "ledger.db", capacity=1 << 40, token="bench")
    server = start_server(home, out_dir, ledger=ledger, args=[
        "--Lockdown.budget_reservation_bytes=1", f"--Lockdown.allowed_proxy_ports={dash_port}"])

    def counted() -> int:
        with ledger.ledger.sessions() as session:
            row = session.get(ServedBytes, ("alice", "proj-a"))
            return row.served if row else 0

    rows = []
    try:
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=str(CHROMIUM), headless=True,
                                        args=["--no-sandbox", "--disable-gpu"])
            page = browser.new_page(viewport={"width": 1280, "height": 800})
            page.goto(f"{server.base}/lab?token={server.token}")
            page.wait_for_selector(".jp-DirListing-item", timeout=120_000)
            time.sleep(5)
            rows.append(_row("open JupyterLab", counted(), "MB", note="static assets exempt"))
            start = counted()
            time.sleep(idle)
            rows.append(_row("JupyterLab open, idle", (counted() - start) * 3600 / idle, "MB/h", per_hour=True))
            start = counted()
            page.dblclick('.jp-DirListing-item[title*="example.ipynb"]')
            page.wait_for_selector(".jp-Notebook", timeout=60_000)
            page.wait_for_selector(".jp-Notebook-ExecutionIndicator[data-status='idle']", timeout=60_000)
            time.sleep(5)
            rows.append(_row("open the example notebook, start its kernel", counted() - start, "MB"))
            start = counted()
            page.locator(".jp-Notebook .jp-Cell").first.click()
            page.keyboard.press("Escape")
            page.keyboard.press("a")  # a new cell above, edited, run
            page.keyboard.press("Enter")
            page.keyboard.type(PLOT)
            page.keyboard.press("Shift+Enter")
            page.wait_for_selector(".jp-OutputArea-output img", timeout=60_000)
            time.sleep(3)
            rows.append(_row("run a cell drawing a bar chart", counted() - start, "MB"))
            start = counted()
            page.goto(f"{server.base}/proxy/{dash_port}/status")
            time.sleep(10)
            rows.append(_row("open the Dask dashboard", counted() - start, "MB", note="its static files exempt"))
            start = counted()
            time.sleep(idle)
            rows.append(_row("Dask dashboard open", (counted() - start) * 3600 / idle, "MB/h", per_hour=True,
                             note="live plots over its WebSocket"))
            browser.close()
    finally:
        server.stop()
        ledger.close()
        client.close()
        cluster.close()
    markdown = ("Bytes counted by the lockdown's budget for ordinary use (a real server, Chromium). "
                "Ratio: how many times the activity fits in the default daily budget (for rates: "
                "32 MiB / (24 h x rate)). See docs/isolation.md.")
    return {"title": "Lockdown: bytes shown in the browser", "rows": rows, "markdown": markdown}


if __name__ == "__main__":
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        for r in run(Path(tmp), quick="--quick" in sys.argv)["rows"]:
            print(r)
