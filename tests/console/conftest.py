"""Fixtures for the console's browser tests: a 3-broker cluster
(scripts/local-cluster.sh), two `sluice console` processes on it (one
--read-only), and a headless Chromium driven by Selenium.

Environment:
  SLUICE_BIN_DIR  where sluice binaries are (default <repo>/target/debug).
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import pytest
from selenium import webdriver
from selenium.webdriver.chrome.service import Service

REPO = Path(__file__).resolve().parents[2]
BIN_DIR = Path(os.environ.get("SLUICE_BIN_DIR", REPO / "target" / "debug"))
SLUICE = BIN_DIR / "sluice"
SHOTS = REPO / "target" / "console-screenshots"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class Console:
    bootstrap: str
    url: str
    read_only_url: str
    workdir: Path

    def sluice(self, *args: str, input: str | None = None) -> str:
        res = subprocess.run([str(SLUICE), *args], capture_output=True, text=True,
                             input=input, timeout=120)
        if res.returncode != 0:
            raise AssertionError(f"sluice {' '.join(args)} failed:\n{res.stdout}\n{res.stderr}")
        return res.stdout


def start_console(bootstrap: str, workdir: Path, name: str, *extra: str):
    port = free_port()
    log = open(workdir / f"{name}.log", "w")
    proc = subprocess.Popen(
        [str(SLUICE), "console", "--bootstrap-server", bootstrap,
         "--listen", f"127.0.0.1:{port}", *extra],
        stdout=log, stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.time() + 60
    while True:
        if proc.poll() is not None:
            raise RuntimeError(f"{name} exited: {(workdir / f'{name}.log').read_text()}")
        try:
            with urllib.request.urlopen(url + "/", timeout=5) as r:
                if r.status == 200 and b"brokers alive" in r.read():
                    return proc, url
        except OSError:
            pass
        if time.time() > deadline:
            raise TimeoutError(f"{name} did not serve the cluster: {(workdir / f'{name}.log').read_text()}")
        time.sleep(0.3)


@pytest.fixture(scope="session")
def console():
    if not SLUICE.exists():
        pytest.fail(f"{SLUICE} missing: cargo build --workspace --bins")
    workdir = Path(tempfile.mkdtemp(prefix="sluice-console-"))
    script = REPO / "scripts" / "local-cluster.sh"
    procs = []
    try:
        res = subprocess.run([str(script), "up", "--brokers", "3", "--dir", str(workdir), "--debug"],
                             capture_output=True, text=True, timeout=300)
        if res.returncode != 0:
            raise RuntimeError(f"local-cluster.sh up failed:\n{res.stdout}\n{res.stderr}")
        bootstrap = (workdir / "bootstrap").read_text().strip()
        p, url = start_console(bootstrap, workdir, "console")
        procs.append(p)
        p, ro_url = start_console(bootstrap, workdir, "console-ro", "--read-only")
        procs.append(p)
        yield Console(bootstrap, url, ro_url, workdir)
    finally:
        for p in procs:
            p.send_signal(signal.SIGTERM)
            try:
                p.wait(timeout=20)
            except subprocess.TimeoutExpired:
                p.kill()
        subprocess.run([str(script), "down", "--dir", str(workdir)], capture_output=True, timeout=120)
        shutil.rmtree(workdir, ignore_errors=True)


@pytest.fixture(scope="session")
def browser():
    opts = webdriver.ChromeOptions()
    opts.binary_location = shutil.which("chromium") or "/usr/bin/chromium"
    for a in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu",
              "--window-size=1400,1000"):
        opts.add_argument(a)
    service = Service(executable_path=shutil.which("chromedriver") or "/usr/bin/chromedriver")
    driver = webdriver.Chrome(options=opts, service=service)
    driver.set_page_load_timeout(60)
    SHOTS.mkdir(parents=True, exist_ok=True)
    yield driver
    driver.quit()


def shot(driver, name: str) -> None:
    """Saves a full-height screenshot of the page as a test artifact."""
    height = driver.execute_script("return document.body.scrollHeight")
    driver.set_window_size(1400, max(1000, min(int(height) + 100, 4000)))
    driver.save_screenshot(str(SHOTS / f"{name}.png"))
    driver.set_window_size(1400, 1000)
