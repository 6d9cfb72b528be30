"""The docs are executable: every curl example in docs/API.md and README.md runs here.

Conventions the docs follow (docs/API.md states them for readers):
- an example is a ```sh block of `curl` commands aimed at `localhost:5000`;
- in docs/API.md each example is followed by a line `→ `<status> <reason>``
  (optionally more backticked `Header: value` items) and a ```json block with
  the exact response body; the string "..." in it matches any value (as a list's
  last item: any further items);
- `<next>` in a command stands for the `next` cursor of the latest answer that had one;
- README.md's examples carry no expected response: each must succeed (2xx, "success");
  a block that also runs other commands is a walkthrough, left to its own test.
docs/API.md's examples run in document order against a real `tiddly serve` on a
fresh database, with the real curl binary; README.md's run after them.

The operator table and the error-code table in docs/API.md are generated from
query.OPERATORS and errors.ERROR_CODES; a test fails when they drift.
Refresh them with `python tests/test_docs.py`.
"""
from __future__ import annotations

import json
import re
import shlex
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from tiddly.errors import ERROR_CODES
from tiddly.services.query import OPERATORS

ROOT = Path(__file__).resolve().parent.parent
API_DOC = ROOT / "docs" / "API.md"
README = ROOT / "README.md"
DOC_HOST = "localhost:5000"
ANY = "..."
NEXT = "<next>"

_FENCE = re.compile(r"^```([\w+-]*)[^\n]*\n(.*?)^```[ \t]*$", re.MULTILINE | re.DOTALL)
_RESPONSE = re.compile(r"^→ `(\d{3})[^`]*`(.*)$", re.MULTILINE)
_HEADER = re.compile(r"`([A-Za-z-]+): ([^`]*)`")
_SHELL = ("sh", "bash", "shell", "console")


@dataclass
class Example:
    line: int
    commands: list[list[str]]
    status: int | None = None
    headers: dict[str, str] = field(default_factory=dict)
    body: object = None

    @property
    def expects_response(self) -> bool:
        return self.status is not None


# -- parsing the Markdown ----------------------------------------------------------

def parse_examples(text: str) -> list[Example]:
    """Every curl block, in document order, with the response documented after it (if any)."""
    fences = list(_FENCE.finditer(text))
    examples = []
    for index, fence in enumerate(fences):
        if fence.group(1) not in _SHELL:
            continue
        commands = _curl_commands(fence.group(2))
        if not commands:
            continue
        example = Example(line=text.count("\n", 0, fence.start()) + 1, commands=commands)
        following = fences[index + 1] if index + 1 < len(fences) else None
        between = text[fence.end():following.start() if following else len(text)]
        marker = _RESPONSE.search(between)
        if marker:
            if following is None or following.group(1) != "json":
                raise ValueError(f"line {example.line}: a response marker must be followed by a ```json block")
            example.status = int(marker.group(1))
            example.headers = dict(_HEADER.findall(marker.group(2)))
            example.body = json.loads(following.group(2))
        examples.append(example)
    return examples


def _curl_commands(block: str) -> list[list[str]]:
    commands, pending = [], ""
    for line in block.replace("\\\n", " ").splitlines():
        pending = f"{pending}\n{line}" if pending else line
        try:
            argv = shlex.split(pending, comments=True)
        except ValueError:
            continue  # a quoted body spans several lines
        commands += [argv] if argv else []
        pending = ""
    if pending:
        raise ValueError(f"unclosed quote in a shell block: {block!r}")
    # A block that also starts a server or sets up files is a walkthrough, not an example.
    return commands if commands and all(c[0] == "curl" for c in commands) else []


# -- running an example ------------------------------------------------------------

def run_curl(argv: list[str], base: str, tmp_path: Path, cursor: str) -> tuple[int, dict[str, str], str]:
    """Run one documented curl command against ``base``; returns (status, headers, body)."""
    if not any(DOC_HOST in arg for arg in argv):
        raise AssertionError(f"a documented curl must target {DOC_HOST}: {shlex.join(argv)}")
    args = [arg.replace(f"http://{DOC_HOST}", base).replace(DOC_HOST, base).replace(NEXT, cursor)
            for arg in argv[1:]]
    head, body = tmp_path / "head.txt", tmp_path / "body.txt"
    done = subprocess.run(["curl", "-sS", "--max-time", "30", "-D", str(head), "-o", str(body), *args],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, f"curl failed ({done.returncode}): {done.stderr}"
    # The last header block is the final response (a 100 Continue may come first).
    block = head.read_text().replace("\r\n", "\n").strip().split("\n\n")[-1].splitlines()
    headers = dict(line.split(": ", 1) for line in block[1:] if ": " in line)
    return int(block[0].split()[1]), {k.lower(): v for k, v in headers.items()}, body.read_text()


def matches(expected, actual) -> bool:
    """JSON equality in which the string "..." stands for any value, and as a list's
    last item for any further items."""
    if expected == ANY:
        return True
    if isinstance(expected, dict):
        return (isinstance(actual, dict) and expected.keys() == actual.keys()
                and all(matches(v, actual[k]) for k, v in expected.items()))
    if isinstance(expected, list):
        if not isinstance(actual, list):
            return False
        if expected[-1:] == [ANY]:
            expected, actual = expected[:-1], actual[:len(expected) - 1]
        return len(expected) == len(actual) and all(matches(e, a) for e, a in zip(expected, actual))
    return type(expected) is type(actual) and expected == actual


def check_example(example: Example, base: str, tmp_path: Path, state: dict) -> list[str]:
    """What went wrong running one example (an empty list when it behaved as documented)."""
    problems = []
    for argv in example.commands:
        status, headers, text = run_curl(argv, base, tmp_path, state.get("next", ""))
        where = f"line {example.line}: {shlex.join(argv)}\n   "
        try:
            body = json.loads(text)
        except ValueError:
            problems.append(f"{where}status {status}, body is not JSON: {text[:200]!r}")
            continue
        if isinstance(body, dict) and "next" in body:
            state["next"] = body["next"]
        if not example.expects_response:
            if not (200 <= status < 300 and isinstance(body, dict) and body.get("status") == "success"):
                problems.append(f"{where}expected success, got {status} {text}")
            continue
        if status != example.status:
            problems.append(f"{where}status {status}, documented {example.status}: {text}")
        elif not matches(example.body, body):
            problems.append(f"{where}body {text}\n    documented {json.dumps(example.body)}")
        for name, value in example.headers.items():
            if headers.get(name.lower()) != value:
                problems.append(f"{where}header {name}: {headers.get(name.lower())!r}, documented {value!r}")
    return problems


def run_document(path: Path, base: str, tmp_path: Path) -> None:
    examples = parse_examples(path.read_text())
    assert examples, f"{path.name} has no curl examples"
    state: dict = {}
    problems = [p for example in examples for p in check_example(example, base, tmp_path, state)]
    assert not problems, f"{path.name}: {len(problems)} example(s) differ from the server:\n" + "\n".join(problems)


# -- generated tables --------------------------------------------------------------

_TAKES = {"value": "one value", "list": "a list of values", "pair": "`[low, high]`",
          "pattern": "a string pattern", "is": "`null`, `true` or `false`"}


def operators_table() -> str:
    rows = [f"| `{op.name}` | {_TAKES[op.accepts]} | {op.doc} |" for op in OPERATORS.values()]
    return "\n".join(["| operator | takes | matches rows whose column is |", "| --- | --- | --- |", *rows])


def error_codes_table() -> str:
    rows = [f"| `{code}` | {status} | {doc} |" for code, (status, doc) in ERROR_CODES.items()]
    return "\n".join(["| code | status | meaning |", "| --- | --- | --- |", *rows])


GENERATED = {"operators": operators_table, "error-codes": error_codes_table}


def _region(name: str) -> re.Pattern:
    return re.compile(rf"(^<!-- generated: {name} [^\n]*-->\n)(.*?)(^<!-- end generated -->$)",
                      re.DOTALL | re.MULTILINE)


def generated_region(text: str, name: str) -> str:
    found = _region(name).search(text)
    assert found, f"docs/API.md lacks the generated region {name!r}"
    return found.group(2).rstrip("\n")


def regenerate(text: str) -> str:
    for name, render in GENERATED.items():
        text = _region(name).sub(lambda m, r=render: m.group(1) + r() + "\n" + m.group(3), text)
    return text


# -- tests -------------------------------------------------------------------------

@pytest.mark.parametrize("name", sorted(GENERATED))
def test_generated_table_matches_code(name):
    assert generated_region(API_DOC.read_text(), name) == GENERATED[name](), (
        f"the {name} table in docs/API.md drifted from the code: run `python tests/test_docs.py`")


def test_every_api_example_documents_its_response():
    examples = parse_examples(API_DOC.read_text())
    assert len(examples) >= 40
    missing = [e.line for e in examples if not e.expects_response]
    assert not missing, f"curl examples without a documented response at lines {missing}"
    assert all(len(e.commands) == 1 for e in examples), "one curl per example, so each has its response"


def test_every_operator_and_error_code_is_in_the_doc():
    text = API_DOC.read_text()
    operators = generated_region(text, "operators")
    codes = generated_region(text, "error-codes")
    assert all(f"| `{name}` |" in operators for name in OPERATORS)
    assert all(f"| `{code}` |" in codes for code in ERROR_CODES)


def test_matches_treats_dots_as_any_value_only():
    assert matches({"a": ANY, "b": [1, ANY]}, {"a": {"x": 1}, "b": [1, "z"]})
    assert matches([1, ANY], [1, 2, 3]) and not matches([1, ANY], [])
    assert not matches({"a": 1}, {"a": 1, "b": 2})
    assert not matches({"a": 1}, {"a": True})
    assert not matches([1, 2], [2, 1])


def test_doc_examples_run_as_documented(db_url, live_server_factory, tmp_path):
    """docs/API.md in order on a fresh database, then README.md's (which only need to succeed)."""
    server = live_server_factory(db_url, workers=1, threads=2)
    run_document(API_DOC, server.url, tmp_path)
    run_document(README, server.url, tmp_path)


if __name__ == "__main__":
    for region in GENERATED:
        generated_region(API_DOC.read_text(), region)
    API_DOC.write_text(regenerate(API_DOC.read_text()))
    print(f"regenerated {', '.join(GENERATED)} in {API_DOC.relative_to(ROOT)}")
