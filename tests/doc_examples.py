"""Running the curl examples of the docs: shared by the tests that keep each document honest
(test_docs.py: docs/API.md and README.md; test_postgrest_docs.py; test_patients_doc.py).

Conventions the docs follow (docs/API.md states them for readers): an example is a ```sh
block of `curl` commands aimed at `localhost:5000`; a documented response follows it as a line
`→ `<status> <reason>`` (optionally more backticked `Header: value` items) and a ```json block
with the exact body, in which "..." matches any value (as a list's last item: any further
items); `<next>` in a command stands for the `next` cursor of the latest answer that had one.
"""
from __future__ import annotations

import json
import re
import shlex
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
API_DOC = ROOT / "docs" / "API.md"
README = ROOT / "README.md"
DOC_HOST = "localhost:5000"
ANY = "..."
NEXT = "<next>"

FENCE = re.compile(r"^```([\w+-]*)[^\n]*\n(.*?)^```[ \t]*$", re.MULTILINE | re.DOTALL)
RESPONSE = re.compile(r"^→ `(\d{3})[^`]*`(.*)$", re.MULTILINE)
HEADER = re.compile(r"`([A-Za-z-]+): ([^`]*)`")
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
    fences = list(FENCE.finditer(text))
    examples = []
    for index, fence in enumerate(fences):
        if fence.group(1) not in _SHELL:
            continue
        commands = curl_commands(fence.group(2))
        if not commands:
            continue
        example = Example(line=text.count("\n", 0, fence.start()) + 1, commands=commands)
        following = fences[index + 1] if index + 1 < len(fences) else None
        between = text[fence.end():following.start() if following else len(text)]
        marker = RESPONSE.search(between)
        if marker:
            if following is None or following.group(1) != "json":
                raise ValueError(f"line {example.line}: a response marker must be followed by a ```json block")
            example.status = int(marker.group(1))
            example.headers = dict(HEADER.findall(marker.group(2)))
            example.body = json.loads(following.group(2))
        examples.append(example)
    return examples


def curl_commands(block: str) -> list[list[str]]:
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


def region(name: str) -> re.Pattern:
    """A generated region of a document: ``<!-- generated: name ... -->`` ... ``<!-- end generated -->``."""
    return re.compile(rf"(^<!-- generated: {name} [^\n]*-->\n)(.*?)(^<!-- end generated -->$)",
                      re.DOTALL | re.MULTILINE)
