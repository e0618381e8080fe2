"""docs/RELIABILITY.md lists every bad-input case the tests assert (so the two cannot drift)."""
import ast
import os
import pathlib

import pytest
import reliability_doc

TESTS = pathlib.Path(__file__).parent
DOC = TESTS.parent / "docs" / "RELIABILITY.md"


writing = pytest.mark.skipif(os.environ.get("WRITE_RELIABILITY_DOC") == "1",
                             reason="this run writes the document")


def cases_in_tests():
    """Literal first arguments of every `bad_input(...)` call in tests/*.py."""
    found = {}
    for path in sorted(TESTS.glob("test_*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if (isinstance(node, ast.Call) and getattr(node.func, "id", None) == "bad_input"
                    and node.args and isinstance(node.args[0], ast.Constant)):
                found[node.args[0].value] = path.name
    return found


@writing
def test_every_case_is_documented():
    doc = DOC.read_text(encoding="utf-8")
    table = doc.split(reliability_doc.START, 1)[1].split(reliability_doc.END, 1)[0]
    missing = {c: f for c, f in cases_in_tests().items()
               if f"| {reliability_doc._cell(c)} |" not in table}
    assert not missing, (f"bad-input cases missing from docs/RELIABILITY.md: {missing}; regenerate "
                         "it with WRITE_RELIABILITY_DOC=1 python -m pytest -q")


def test_render_is_a_table_of_recorded_cases():
    rec = [{"case": "b", "exception": "ValueError", "message": "x | y", "test": "tests/t.py::f"},
           {"case": "a", "exception": "ValueError", "message": "m", "test": "tests/t.py::g"},
           {"case": "a", "exception": "ValueError", "message": "m2", "test": "tests/t.py::h"}]
    lines = reliability_doc.render(rec).splitlines()
    assert lines[1] == "2 cases, each asserted by the test named."
    assert lines[5] == "| a | ValueError: m | `tests/t.py::g` |"
    assert lines[6] == "| b | ValueError: x \\| y | `tests/t.py::f` |"
