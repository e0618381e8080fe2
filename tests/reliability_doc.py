"""Writes docs/RELIABILITY.md's bad-input table from the cases the test session recorded.

Run `WRITE_RELIABILITY_DOC=1 python -m pytest -q` (the whole suite; a failing run writes nothing).
The text around the table (guarantees, how they are tested) is kept; only the part between the
two markers is replaced.
"""
import pathlib

START, END = "<!-- bad-inputs:start -->", "<!-- bad-inputs:end -->"


def _cell(text):
    return text.replace("|", "\\|").replace("\n", " ")


def render(recorded):
    """Markdown table, one row per case (first recorded message), sorted by case."""
    rows, seen = [], set()
    for rec in sorted(recorded, key=lambda r: (r["case"], r["test"])):
        if rec["case"] in seen:
            continue
        seen.add(rec["case"])
        test = rec["test"].split("::")
        where = f"`{test[0]}::{test[-1]}`" if len(test) > 1 else f"`{rec['test']}`"
        rows.append(f"| {_cell(rec['case'])} | {rec['exception']}: {_cell(rec['message'])} | {where} |")
    head = ["| bad input | what the user gets | test |", "|---|---|---|"]
    return "\n".join([START, f"{len(rows)} cases, each asserted by the test named.", "", *head,
                      *rows, END])


def write(root):
    from reliability import RECORDED  # the module the tests appended to
    path = pathlib.Path(root) / "docs" / "RELIABILITY.md"
    text = path.read_text(encoding="utf-8")
    if START not in text or END not in text:
        raise ValueError(f"{path} lacks the {START} ... {END} markers; add them where the table goes.")
    before, rest = text.split(START, 1)
    after = rest.split(END, 1)[1]
    path.write_text(before + render(RECORDED) + after, encoding="utf-8")
