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

import pytest
from doc_examples import (
    ANY,
    API_DOC,
    README,
    ROOT,
    matches,
    parse_examples,
    region,
    run_document,
)

from tiddly.errors import ERROR_CODES
from tiddly.services.query import OPERATORS

# -- generated tables --------------------------------------------------------------

_TAKES = {"value": "one value", "list": "a list of values", "pair": "`[low, high]`",
          "pattern": "a string pattern", "is": "`null`, `true` or `false`",
          "structure": "a JSON value; a list (an array); a range's text", "range": "a range's text",
          "regex": "a regular expression", "search": "a query, or `[query, configuration]`"}


def operators_table() -> str:
    rows = [f"| `{op.name}` | {_TAKES[op.accepts]} | {op.doc} |" for op in OPERATORS.values()]
    return "\n".join(["| operator | takes | matches rows whose column is |", "| --- | --- | --- |", *rows])


def error_codes_table() -> str:
    rows = [f"| `{code}` | {status} | {doc} |" for code, (status, doc) in ERROR_CODES.items()]
    return "\n".join(["| code | status | meaning |", "| --- | --- | --- |", *rows])


GENERATED = {"operators": operators_table, "error-codes": error_codes_table}


def generated_region(text: str, name: str) -> str:
    found = region(name).search(text)
    assert found, f"docs/API.md lacks the generated region {name!r}"
    return found.group(2).rstrip("\n")


def regenerate(text: str) -> str:
    for name, render in GENERATED.items():
        text = region(name).sub(lambda m, r=render: m.group(1) + r() + "\n" + m.group(3), text)
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
    for name in GENERATED:
        generated_region(API_DOC.read_text(), name)
    API_DOC.write_text(regenerate(API_DOC.read_text()))
    print(f"regenerated {', '.join(GENERATED)} in {API_DOC.relative_to(ROOT)}")
