"""A real JupyterLab server and a real Chromium, for the browser tests.

`lab` starts JupyterLab once per session on 127.0.0.1 (a free port, a random token, temporary
settings, workspaces, runtime and config folders), serving the repository root, and kills
its whole process group at the end, whatever happened. `browser_context` launches Debian's
Chromium through Playwright (`executable_path`: nothing is downloaded), headless. Both skip, saying why, when
Chromium or Playwright is missing.
"""

from __future__ import annotations

import contextlib
import importlib.util
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import pytest

from utils.course import ROOT

ARTIFACTS = ROOT / "test-artifacts" / "browser"
SERVER_START_TIMEOUT_S = 60
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-quic",
    "--disable-dev-shm-usage",
]

# Settings the learner never sees but the tests need: nothing is ever saved back to
# solutions/, every cell stays in the page (no virtual scrolling), no news is fetched.
SETTINGS = {
    "@jupyterlab/docmanager-extension/plugin.jupyterlab-settings": {"autosave": False},
    "@jupyterlab/notebook-extension/tracker.jupyterlab-settings": {"windowingMode": "none"},
    "@jupyterlab/apputils-extension/notification.jupyterlab-settings": {
        "fetchNews": "false",
        "checkForUpdates": False,
    },
}


# What a learner does not install (requirements.txt): the dev tools' server and lab extensions stay off.
SERVER_EXTENSIONS_OFF = (
    "jupyter_lsp",
    "nbgrader.server_extensions.assignment_list",
    "nbgrader.server_extensions.course_list",
    "nbgrader.server_extensions.formgrader",
    "nbgrader.server_extensions.validate_assignment",
)
LAB_EXTENSIONS_OFF = ("@jupyter/nbgrader",)


def pytest_configure(config):
    config.addinivalue_line("markers", "browser: drives JupyterLab in a real Chromium (slow; needs chromium)")


def chromium_path() -> str | None:
    """Debian's Chromium: $CHROMIUM if set, else `chromium` on PATH."""
    found = os.environ.get("CHROMIUM") or shutil.which("chromium") or shutil.which("chromium-browser")
    return found if found and os.access(found, os.X_OK) else None


def missing_tools() -> str | None:
    """Why the browser tests cannot run here, or None."""
    if importlib.util.find_spec("playwright") is None:
        return "the Python package `playwright` is not installed (pip install playwright; no browser download needed)"
    if chromium_path() is None:
        return "no Chromium found (apt-get install chromium, or set $CHROMIUM)"
    return None


@dataclass
class Lab:
    url: str  # http://127.0.0.1:PORT
    token: str
    log: Path

    def api(self, method: str, path: str, timeout: float = 10):
        request = urllib.request.Request(
            f"{self.url}{path}", method=method, headers={"Authorization": f"token {self.token}"}
        )
        with urllib.request.urlopen(request, timeout=timeout) as response:
            body = response.read()
        return json.loads(body) if body else None

    def shut_down_kernels(self) -> None:
        """End every session and kernel, so each lesson starts from a fresh kernel and memory is returned."""
        with contextlib.suppress(urllib.error.URLError, OSError):
            for session in self.api("GET", "/api/sessions"):
                with contextlib.suppress(urllib.error.URLError, OSError):
                    self.api("DELETE", f"/api/sessions/{session['id']}")
            for kernel in self.api("GET", "/api/kernels"):
                with contextlib.suppress(urllib.error.URLError, OSError):
                    self.api("DELETE", f"/api/kernels/{kernel['id']}")

    def log_tail(self, lines: int = 40) -> str:
        try:
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no server log)"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def die_with_parent() -> None:
    """In the server's process, before it starts: on Linux, be sent SIGTERM when pytest dies,
    even by SIGKILL (a cancelled CI job), so no server outlives its tests."""
    with contextlib.suppress(Exception):
        import ctypes

        PR_SET_PDEATHSIG = 1
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)


def stop(process: subprocess.Popen) -> None:
    """SIGTERM the server's process group, then SIGKILL what is left. (A kernel the server could not
    shut down exits by itself: ipykernel watches its parent, JPY_PARENT_PID, and ends with it.)"""
    if process.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            pass
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(process.pid, signal.SIGKILL)
    with contextlib.suppress(subprocess.TimeoutExpired):
        process.wait(timeout=5)


@pytest.fixture(scope="session")
def browser_tools() -> str:
    reason = missing_tools()
    if reason:
        pytest.skip(f"browser tests skipped: {reason}")
    return chromium_path()


@pytest.fixture(scope="session")
def browser_artifacts() -> Path:
    """Where the screenshots and the server's log go (ignored by git)."""
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    return ARTIFACTS


@pytest.fixture(scope="session")
def lab(browser_tools, browser_artifacts) -> Lab:
    with tempfile.TemporaryDirectory(prefix="course-lab-") as tmp:
        tmp = Path(tmp)
        settings, workspaces = tmp / "settings", tmp / "workspaces"
        for name, values in SETTINGS.items():
            path = settings / name
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(json.dumps(values))
        workspaces.mkdir()
        page_config = tmp / "config" / "labconfig" / "page_config.json"
        page_config.parent.mkdir(parents=True)
        page_config.write_text(json.dumps({"disabledExtensions": {name: True for name in LAB_EXTENSIONS_OFF}}))
        port, token = free_port(), secrets.token_hex(24)
        env = dict(
            os.environ,
            JUPYTER_RUNTIME_DIR=str(tmp / "runtime"),
            JUPYTER_CONFIG_DIR=str(tmp / "config"),
            MPLBACKEND="module://matplotlib_inline.backend_inline",
            PYTHONUNBUFFERED="1",
        )
        command = [
            sys.executable,
            "-m",
            "jupyterlab",  # not `jupyter lab`, which would run the server as a grandchild
            f"--ServerApp.root_dir={ROOT}",
            "--ServerApp.ip=127.0.0.1",
            f"--ServerApp.port={port}",
            "--ServerApp.port_retries=0",
            f"--IdentityProvider.token={token}",
            "--ServerApp.open_browser=False",
            "--ServerApp.allow_root=True",  # CI containers run as root
            "--ServerApp.terminals_enabled=False",
            f"--LabApp.user_settings_dir={settings}",
            f"--LabApp.workspaces_dir={workspaces}",
            "--LabApp.expose_app_in_browser=True",
            "--LabApp.news_url=",
            "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate",
            # JupyterLab makes a checkpoint of a notebook it opens: into the temporary folder, not solutions/.
            f"--FileCheckpoints.checkpoint_dir={tmp / 'checkpoints'}",
            *(f"--ServerApp.jpserver_extensions={name}=False" for name in SERVER_EXTENSIONS_OFF),
        ]
        log = browser_artifacts / "jupyterlab.log"
        with open(log, "wb") as out:
            process = subprocess.Popen(
                command,
                cwd=ROOT,
                env=env,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # a process group of its own, killed as one at the end
                preexec_fn=die_with_parent if sys.platform.startswith("linux") else None,
            )
        server = Lab(url=f"http://127.0.0.1:{port}", token=token, log=log)
        try:
            deadline = time.monotonic() + SERVER_START_TIMEOUT_S
            while True:
                if process.poll() is not None:
                    pytest.fail(f"JupyterLab exited with code {process.returncode}:\n{server.log_tail()}")
                try:
                    server.api("GET", "/api/status", timeout=2)
                    break
                except (urllib.error.URLError, OSError):
                    pass
                if time.monotonic() > deadline:
                    pytest.fail(f"JupyterLab did not answer within {SERVER_START_TIMEOUT_S} s:\n{server.log_tail()}")
                time.sleep(0.5)
            yield server
        finally:
            server.shut_down_kernels()  # kernels run in process groups of their own
            stop(process)


@pytest.fixture(scope="session")
def browser_context(browser_tools):
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(
            executable_path=browser_tools, headless=True, args=CHROMIUM_ARGS, timeout=60_000
        )
        try:
            # One context for the session: JupyterLab's scripts are fetched once and cached.
            context = chromium.new_context(viewport={"width": 1400, "height": 1000})
            yield context
        finally:
            chromium.close()
