"""A throw-away JupyterLab server for browser tests: isolated, local, and stopped for sure.

``running_lab(root, state)`` starts this environment's ``jupyter lab`` on 127.0.0.1 on a free port
with a random token, serving ``root`` (a temporary copy of the repository, so that autosave never
touches the checkout). Every per-user directory (config, data, runtime, IPython, lab settings and
workspaces) lives under ``state``, so the user's theme and settings cannot leak in, and the server
makes no network calls of its own (no news, no update check, no extension-manager PyPI lookups).
The kernel is this interpreter: a ``python3`` kernelspec in the private data dir points at
``sys.executable``, with the served copy first on its ``PYTHONPATH`` (the code under test).

>>> settings = user_settings("JupyterLab Dark")
>>> settings["@jupyterlab/apputils-extension:themes"]["theme"]
'JupyterLab Dark'
>>> lab_arguments(Path("/srv/nb"), port=8123, token="t0k")[:3]
['-m', 'jupyterlab', '--no-browser']
"""

from __future__ import annotations

import json
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

KERNEL_DISPLAY_NAME = "Python 3 (ipykernel)"
START_TIMEOUT_S = 120.0
STOP_TIMEOUT_S = 30.0

#: Environment variables that would point Jupyter at the user's own files.
USER_VARIABLES = ("JUPYTER_PATH", "JUPYTER_CONFIG_PATH", "JUPYTERLAB_DIR", "PYTHONPATH",
                  "JUPYTER_PLATFORM_DIRS", "JUPYTER_NO_CONFIG", "JUPYTER_ALLOW_INSECURE_WRITES")


@dataclass(frozen=True)
class Lab:
    """A running server: where to point the browser, and its log for failure messages."""

    url: str          # 'http://127.0.0.1:PORT/', always ending in '/'
    token: str
    root: Path        # what the server serves (the temporary copy)
    log: Path

    def address(self, path: str) -> str:
        """The browser address of ``path`` (relative to the server), token included.

        >>> Lab("http://127.0.0.1:9/", "abc", Path("."), Path("log")).address("lab/tree/a b.ipynb")
        'http://127.0.0.1:9/lab/tree/a%20b.ipynb?token=abc'
        """
        return f"{self.url}{urllib.parse.quote(path)}?token={self.token}"

    def log_tail(self, lines: int = 40) -> str:
        """The end of the server's log, to explain a failure."""
        try:
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no server log)"


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now.

    >>> 1024 <= free_port() <= 65535
    True
    """
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def user_settings(theme: str = "JupyterLab Light") -> dict[str, dict]:
    """JupyterLab user settings for a quiet, deterministic test session, keyed by plugin id.

    An explicit theme (not the system's preference), no news or update notifications, no extension
    manager, no autosave, the notebook's kernel started without asking, and every cell attached to the
    DOM (no windowing), so that a widget far down the notebook can be found and measured.
    """
    return {
        "@jupyterlab/apputils-extension:themes": {"theme": theme, "adaptive-theme": False},
        "@jupyterlab/apputils-extension:notification": {"fetchNews": "false", "checkForUpdates": False},
        "@jupyterlab/extensionmanager-extension:plugin": {"enabled": False},
        "@jupyterlab/docmanager-extension:plugin": {"autosave": False},
        "@jupyterlab/notebook-extension:tracker": {"windowingMode": "none", "autoStartDefaultKernel": True},
    }


def write_user_settings(settings_dir: Path, settings: dict[str, dict]) -> None:
    """Write ``settings`` as ``<settings_dir>/<package>/<plugin>.jupyterlab-settings`` files."""
    for plugin_id, values in settings.items():
        package, plugin = plugin_id.split(":")
        path = settings_dir / package / f"{plugin}.jupyterlab-settings"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(values, indent=2), encoding="utf-8")


def write_kernelspec(data_dir: Path, python: str = sys.executable) -> Path:
    """A ``python3`` kernelspec in ``data_dir`` that runs ``python``; returns its kernel.json."""
    path = data_dir / "kernels" / "python3" / "kernel.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    spec = {
        "argv": [python, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
        "display_name": KERNEL_DISPLAY_NAME,
        "language": "python",
        "metadata": {"debugger": True},
    }
    path.write_text(json.dumps(spec, indent=2), encoding="utf-8")
    return path


def isolated_environment(state: Path) -> dict[str, str]:
    """``os.environ`` with every per-user Jupyter and IPython directory moved under ``state``."""
    env = {key: value for key, value in os.environ.items() if key not in USER_VARIABLES}
    dirs = {
        "JUPYTER_CONFIG_DIR": state / "config",
        "JUPYTER_DATA_DIR": state / "data",
        "JUPYTER_RUNTIME_DIR": state / "runtime",
        "IPYTHONDIR": state / "ipython",
        "JUPYTERLAB_SETTINGS_DIR": state / "lab-user-settings",
        "JUPYTERLAB_WORKSPACES_DIR": state / "lab-workspaces",
    }
    for key, path in dirs.items():
        path.mkdir(parents=True, exist_ok=True)
        env[key] = str(path)
    # In a virtual environment Jupyter prefers the environment's data (its python3 kernelspec)
    # over the user's: the kernelspec written here must win.
    env["JUPYTER_PREFER_ENV_PATH"] = "0"
    env["NO_PROXY"] = env["no_proxy"] = "127.0.0.1,localhost"
    return env


def lab_arguments(root: Path, *, port: int, token: str) -> list[str]:
    """The command line (after the interpreter) of a local, token-protected, offline JupyterLab."""
    return [
        "-m", "jupyterlab",
        "--no-browser",
        "--ServerApp.ip=127.0.0.1",
        f"--ServerApp.port={port}",
        "--ServerApp.port_retries=0",
        f"--IdentityProvider.token={token}",
        f"--ServerApp.root_dir={root}",
        "--ServerApp.terminals_enabled=False",
        "--ServerApp.allow_root=True",  # CI containers often run as root
        "--LabApp.news_url=None",
        "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate",
        "--LabApp.extension_manager=readonly",
    ]


def _answers(url: str, token: str) -> bool:
    """Whether the server at ``url`` answers its REST API with this token."""
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    request = urllib.request.Request(f"{url}api/status", headers={"Authorization": f"token {token}"})
    try:
        with opener.open(request, timeout=5) as response:
            return response.status == 200
    except (urllib.error.URLError, OSError):
        return False


def _shutdown(process: subprocess.Popen, url: str, token: str) -> None:
    """Stop the server and its kernels: the REST shutdown, then SIGTERM, then SIGKILL to its group."""
    if process.poll() is None:
        opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
        request = urllib.request.Request(f"{url}api/shutdown", method="POST",
                                         headers={"Authorization": f"token {token}"})
        try:
            opener.open(request, timeout=10).close()
        except (urllib.error.URLError, OSError):
            process.terminate()
        try:
            process.wait(STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            process.terminate()
            try:
                process.wait(STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                pass
    # The server ran in a session of its own: whatever it left behind (kernels) goes with it.
    try:
        os.killpg(process.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass
    process.wait()


@contextmanager
def running_lab(root: Path, state: Path, *, theme: str = "JupyterLab Light",
                timeout: float = START_TIMEOUT_S) -> Iterator[Lab]:
    """Serve ``root`` with this environment's JupyterLab until the block ends.

    ``state`` (an empty temporary directory) receives every per-user directory, the kernelspec,
    the lab settings (``theme`` first) and the server log. Raises ``RuntimeError`` with the log's
    tail when the server exits or does not answer within ``timeout`` seconds.
    """
    env = isolated_environment(state)
    env["PYTHONPATH"] = str(root)       # the kernel imports the served copy, not an installed one
    write_kernelspec(Path(env["JUPYTER_DATA_DIR"]))
    write_user_settings(Path(env["JUPYTERLAB_SETTINGS_DIR"]), user_settings(theme))
    port, token = free_port(), secrets.token_hex(16)
    url = f"http://127.0.0.1:{port}/"
    log = state / "jupyterlab.log"
    lab = Lab(url=url, token=token, root=root, log=log)
    with open(log, "wb") as sink:
        process = subprocess.Popen([sys.executable, *lab_arguments(root, port=port, token=token)],
                                   cwd=root, env=env, stdin=subprocess.DEVNULL, stdout=sink,
                                   stderr=subprocess.STDOUT, start_new_session=True)
    try:
        deadline = time.monotonic() + timeout
        while not _answers(url, token):
            if process.poll() is not None:
                raise RuntimeError(f"jupyter lab exited with status {process.returncode}:\n"
                                   f"{lab.log_tail()}")
            if time.monotonic() > deadline:
                raise RuntimeError(f"jupyter lab did not answer at {url} within {timeout:.0f} s:\n"
                                   f"{lab.log_tail()}")
            time.sleep(0.5)
        yield lab
    finally:
        _shutdown(process, url, token)
