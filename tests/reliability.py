"""`bad_input`: `pytest.raises` for a bad-input case that also records it for docs/RELIABILITY.md.

    from reliability import bad_input

    def test_pair_outside_n_items():
        with bad_input("MetaMMF data: a pair's item id >= n_items", match="item ids must lie"):
            InteractionData.from_pairs(...)

Every call records (case, exception type, the message a user gets, test id). With
`WRITE_RELIABILITY_DOC=1 python -m pytest -q` the session writes docs/RELIABILITY.md's table from
what the suite really raised (`conftest.pytest_sessionfinish`); `tests/test_reliability_doc.py`
checks that every case named in the tests is in the document, so the two cannot drift apart.
"""
import contextlib
import os
import re

import pytest

RECORDED = []   # dicts: case, exception, message, test


@contextlib.contextmanager
def bad_input(case, exception=ValueError, match=None):
    """Asserts the block raises `exception` (message matching `match`) and records the case."""
    with pytest.raises(exception, match=match) as info:
        yield info
    message = str(info.value).strip().splitlines()[0]
    # pytest's per-test temp folders -> one placeholder, so the document is the same every run
    message = re.sub(r"\S*/pytest-of-[^/\s]+/pytest-\d+/[^/\s]+", "<tmp>", message)
    RECORDED.append({"case": case, "exception": type(info.value).__name__,
                     "message": message[:400],
                     "test": os.environ.get("PYTEST_CURRENT_TEST", "").split(" ")[0]})
