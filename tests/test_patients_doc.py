"""docs/patients.md is executable: each of its curl examples is replayed, in document order on
a fresh database, through the Flask test client, and must answer as documented.

The page's conventions (it states them for readers too): an example is a ```sh block
with one `curl` aimed at `localhost:5000`, then a line "→ `<status> <reason>`"
(optionally more backticked `Header: value` items), then the body: a ```json block
compared as JSON, where "..." stands for any one value, or a ```text block holding the
exact body.
"""
from __future__ import annotations

import json
import re
import shlex
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

from doc_examples import matches

DOC = Path(__file__).resolve().parent.parent / "docs" / "patients.md"
HOST = "localhost:5000"

_FENCE = re.compile(r"^```(\w*)[^\n]*\n(.*?)^```[ \t]*$", re.MULTILINE | re.DOTALL)
_RESPONSE = re.compile(r"^→ `(\d{3})[^`]*`(.*)$", re.MULTILINE)
_HEADER = re.compile(r"`([A-Za-z-]+): ([^`]*)`")


@dataclass
class Example:
    line: int
    argv: list[str]
    status: int
    kind: str   # "json" or "text"
    body: str
    headers: dict[str, str] = field(default_factory=dict)


def parse_examples(text: str) -> list[Example]:
    fences = list(_FENCE.finditer(text))
    examples = []
    for index, fence in enumerate(fences):
        if fence.group(1) != "sh":
            continue
        line = text.count("\n", 0, fence.start()) + 1
        commands = [shlex.split(c) for c in fence.group(2).replace("\\\n", " ").splitlines() if c.strip()]
        assert len(commands) == 1 and commands[0][0] == "curl", f"line {line}: one curl per example"
        following = fences[index + 1] if index + 1 < len(fences) else None
        marker = _RESPONSE.search(text, fence.end(), following.start() if following else len(text))
        assert marker and following and following.group(1) in ("json", "text"), \
            f"line {line}: the example needs a response marker and a json or text block"
        examples.append(Example(line, commands[0], int(marker.group(1)), following.group(1),
                                following.group(2), dict(_HEADER.findall(marker.group(2)))))
    return examples


def replay(client, argv: list[str]):
    """Run a documented curl through the Flask test client."""
    method, headers, data, url = "GET", {}, None, None
    args = iter(argv[1:])
    for arg in args:
        if arg == "-X":
            method = next(args)
        elif arg == "-H":
            name, value = next(args).split(":", 1)
            headers[name.strip()] = value.strip()
        elif arg in ("-d", "--data"):
            data = next(args)
            method = "POST" if method == "GET" else method
        elif arg.startswith("-"):
            raise AssertionError(f"the doc test does not know curl's {arg}")
        else:
            url = arg
    assert url and url.startswith(HOST), f"a documented curl must target {HOST}: {shlex.join(argv)}"
    parts = urlsplit("http://" + url)
    return client.open(parts.path, method=method, query_string=parts.query, headers=headers, data=data)


def check(client, example: Example) -> list[str]:
    response = replay(client, example.argv)
    where = f"line {example.line}: {shlex.join(example.argv)}\n   "
    problems = []
    if response.status_code != example.status:
        problems.append(f"{where}status {response.status_code}, documented {example.status}")
    if example.kind == "text":
        if response.get_data(as_text=True) != example.body[:-1]:  # the fence's own last newline
            problems.append(f"{where}body {response.get_data(as_text=True)!r}, documented {example.body[:-1]!r}")
    elif not matches(json.loads(example.body), response.get_json(silent=True)):
        problems.append(f"{where}body {response.get_data(as_text=True)}\n    documented {example.body}")
    for name, value in example.headers.items():
        if response.headers.get(name) != value:
            problems.append(f"{where}header {name}: {response.headers.get(name)!r}, documented {value!r}")
    return problems


def test_the_patients_doc_examples_answer_as_documented(client):
    examples = parse_examples(DOC.read_text())
    assert len(examples) >= 15
    problems = [p for example in examples for p in check(client, example)]
    assert not problems, f"docs/patients.md: {len(problems)} example(s) differ:\n" + "\n".join(problems)


def test_the_parser_reads_text_and_json_examples():
    text = ("```sh\ncurl localhost:5000/health\n```\n\n→ `200 OK` `Content-Type: x/y`\n\n```text\nhi\n```\n"
            "```sh\ncurl -X PUT localhost:5000/patients -d '{}'\n```\n→ `400 Bad Request`\n```json\n{\"a\": 1}\n```\n")
    first, second = parse_examples(text)
    assert (first.status, first.kind, first.body, first.headers) == (200, "text", "hi\n", {"Content-Type": "x/y"})
    assert (second.argv[:3], second.status, json.loads(second.body)) == (["curl", "-X", "PUT"], 400, {"a": 1})
