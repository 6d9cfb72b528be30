"""Node and the npm clients of tests/clients, for the tests that drive real JavaScript clients
(test_js_clients.py, test_realtime.py)."""
from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

from conftest import cannot_run

CLIENTS = Path(__file__).resolve().parent / "clients"


def node_command(script: str) -> list[str]:
    """How to run ``script`` of tests/clients, its npm packages installed from the lock file when missing."""
    node, npm = shutil.which("node"), shutil.which("npm")
    if not (node and npm):
        cannot_run("node and npm are needed to run postgrest-js and supabase-js", "JavaScript client")
    if not _installed():
        install = subprocess.run([npm, "ci", "--no-audit", "--no-fund"], cwd=CLIENTS, capture_output=True, text=True,
                                 check=False)
        if install.returncode != 0:
            cannot_run(f"npm ci failed in {CLIENTS}:\n{install.stderr}", "JavaScript client")
    version = subprocess.run([node, "--version"], capture_output=True, text=True, check=True).stdout
    # supabase-js builds a realtime client in createClient, which needs the global WebSocket
    # that Node 22 has and Node 20 has behind this flag.
    flags = ["--experimental-websocket"] if int(version.lstrip("v").split(".")[0]) < 22 else []
    return [node, *flags, str(CLIENTS / script)]


def _installed() -> bool:
    """Whether node_modules holds exactly the versions package-lock.json pins."""
    installed = CLIENTS / "node_modules" / ".package-lock.json"
    if not installed.exists():
        return False
    versions = [{name: package.get("version") for name, package in json.loads(path.read_text())["packages"].items()
                 if name} for path in (CLIENTS / "package-lock.json", installed)]
    return versions[0] == versions[1]
