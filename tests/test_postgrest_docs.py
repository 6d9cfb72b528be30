"""docs/postgrest.md is executable: its curl examples run in order against a real `tiddly serve`
on a fresh database (every database), its Python example runs too, and its table of error
codes is generated from render.CODES (refresh it with `python tests/test_postgrest_docs.py`).

The page follows docs/API.md's conventions (see tests/test_docs.py), except that an answer
may have no body (no block after its `→` line) or a CSV one (a ```csv block, whose last
line the server ends without a newline).
"""
from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

from doc_examples import (
    DOC_HOST,
    FENCE,
    HEADER,
    RESPONSE,
    curl_commands,
    matches,
    region,
    run_curl,
)

from tiddly.errors import ApiError
from tiddly.web.postgrest.render import CODES

DOC = Path(__file__).resolve().parent.parent / "docs" / "postgrest.md"


def examples(text: str) -> list[dict]:
    fences = list(FENCE.finditer(text))
    found = []
    for index, fence in enumerate(fences):
        commands = curl_commands(fence.group(2)) if fence.group(1) == "sh" else []
        if not commands:
            continue
        following = fences[index + 1] if index + 1 < len(fences) else None
        between = text[fence.end():following.start() if following else len(text)]
        marker = RESPONSE.search(between)
        assert marker, f"line {text.count(chr(10), 0, fence.start()) + 1}: a curl example needs its → line"
        kind = following.group(1) if following is not None and following.group(1) in ("json", "csv") else None
        found.append({"line": text.count("\n", 0, fence.start()) + 1, "commands": commands,
                      "status": int(marker.group(1)), "headers": dict(HEADER.findall(marker.group(2))),
                      "kind": kind, "body": following.group(2) if kind else ""})
    return found


def check(example: dict, base: str, tmp_path: Path) -> list[str]:
    problems = []
    for argv in example["commands"]:
        status, headers, text = run_curl(argv, base, tmp_path, "")
        where = f"line {example['line']}: status {status}, body {text[:300]!r}"
        if status != example["status"]:
            problems.append(f"{where}: documented {example['status']}")
        elif example["kind"] == "json" and not matches(json.loads(example["body"]), json.loads(text or "null")):
            problems.append(f"{where}: documented {example['body']!r}")
        elif example["kind"] == "csv" and text != example["body"].removesuffix("\n"):  # a fence ends in one
            problems.append(f"{where}: documented {example['body']!r} (with no newline after the last line)")
        elif example["kind"] is None and text != example["body"]:
            problems.append(f"{where}: documented {example['body']!r}")
        for name, value in example["headers"].items():
            if headers.get(name.lower()) != value:
                problems.append(f"{where}: header {name}: {headers.get(name.lower())!r}, documented {value!r}")
    return problems


def error_mapping_table() -> str:
    rows = [f"| `{cls.code}` | {status} | `{code}` |" for cls, (status, code) in CODES.items()]
    return "\n".join(["| Tiddly's code | status | PostgREST's code |", "| --- | --- | --- |", *rows])


def test_every_tiddly_error_class_is_mapped():
    def classes(cls=ApiError):
        yield cls
        for sub in cls.__subclasses__():
            yield from classes(sub)
    assert {cls.code for cls in classes()} <= {cls.code for cls in CODES}


def test_the_error_table_matches_the_code():
    found = region("error-mapping").search(DOC.read_text())
    assert found and found.group(2).rstrip("\n") == error_mapping_table(), \
        "docs/postgrest.md's error table drifted from render.CODES: run `python tests/test_postgrest_docs.py`"


def test_postgrest_doc_examples_run_as_documented(db_url, live_server_factory, tmp_path):
    text = DOC.read_text()
    found = examples(text)
    assert len(found) >= 30
    server = live_server_factory(db_url, workers=1, threads=2)
    problems = [p for example in found for p in check(example, server.url, tmp_path)]
    assert not problems, f"{len(problems)} example(s) differ from the server:\n" + "\n".join(problems)
    (python,) = re.findall(r"```python\n(.*?)```", text, re.DOTALL)
    script = tmp_path / "example.py"
    script.write_text(python.replace(f"http://{DOC_HOST}", server.url))
    done = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr


if __name__ == "__main__":
    DOC.write_text(region("error-mapping").sub(lambda m: m.group(1) + error_mapping_table() + "\n" + m.group(3),
                                                DOC.read_text()))
    print("regenerated the error table in docs/postgrest.md")
