"""docs/configuration.md lists every setting and option; docs/getting-started.md works as written."""
from __future__ import annotations

import json
import os
import re
import shlex
import subprocess
import sys
from dataclasses import MISSING, fields

import click
from serving import ROOT, free_port, tiddly_command, wait_healthy

from tiddly.cli import main, serve
from tiddly.config import Config

CONFIGURATION = (ROOT / "docs" / "configuration.md").read_text()
GETTING_STARTED = (ROOT / "docs" / "getting-started.md").read_text()


def _shown(value) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return '""' if value == "" else str(value)


def _row(name: str) -> str:
    rows = [line for line in CONFIGURATION.splitlines() if line.startswith(f"| `{name}` |")]
    assert len(rows) == 1, f"docs/configuration.md needs one row for `{name}`"
    return rows[0]


def test_every_config_field_is_documented_with_its_variable_and_default():
    for field in fields(Config):
        row = _row(field.name)
        assert f"`TIDDLY_{field.name.upper()}`" in row
        default = field.default if field.default is not MISSING else field.default_factory()
        assert f"`{_shown(default)}`" in row, f"{field.name}: default {default!r} not in {row!r}"


def test_every_command_and_serve_option_is_documented():
    for param in serve.serve.params:
        if isinstance(param, click.Option):
            assert f"`{param.opts[0]}" in CONFIGURATION, param.opts[0]
    for name, command in main.commands.items():
        subcommands = command.commands if isinstance(command, click.Group) else {"": command}
        for sub in subcommands:
            assert f"`tiddly {name} {sub}".rstrip() in CONFIGURATION, f"tiddly {name} {sub}"


def test_getting_started_works_as_written(tmp_path):
    (script,) = re.findall(r"```python\n(.*?)```", GETTING_STARTED, re.DOTALL)
    script_name = re.search(r"Save it as `(\S+)`", GETTING_STARTED).group(1)
    (tmp_path / script_name).write_text(script)
    subprocess.run([sys.executable, script_name], cwd=tmp_path, check=True, timeout=60)
    serve_block, curl_block = re.findall(r"```sh\n(.*?)```", GETTING_STARTED, re.DOTALL)
    (serve_line,) = serve_block.strip().splitlines()
    argv = shlex.split(serve_line)
    assert argv[:2] == ["tiddly", "serve"]
    port = free_port()
    process = subprocess.Popen([tiddly_command(), *argv[1:], "--port", str(port)], cwd=tmp_path,
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                               env={**os.environ, "PYTHONPATH": str(ROOT)})
    try:
        wait_healthy(f"http://127.0.0.1:{port}", process)
        answers = [json.loads(subprocess.run(shlex.split(line.replace("localhost:5000", f"127.0.0.1:{port}")),
                                             capture_output=True, text=True, check=True, timeout=30).stdout)
                   for line in curl_block.strip().splitlines()]
    finally:
        process.terminate()
        process.communicate(timeout=15)
    assert all(a["status"] == "success" for a in answers), answers
    tables, over_20, fetched, created, patched, by_name = answers
    assert {t["name"] for t in tables["data"]} == {"customers", "order"}
    assert [r["total"] for r in over_20["data"]] == [99.0]
    assert [r["total"] for r in fetched["data"]] == [99.0, 12.5] and fetched["count"] == 2
    assert created["id"] == 2 and patched["data"]["full name"] == "Grace B. Hopper"
    assert [r["full name"] for r in by_name["data"]] == ["Grace B. Hopper", "Ada Lovelace"]
