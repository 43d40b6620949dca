"""Notebooks 05 (backprop ninja): the exercise ships blanks, the solutions are right.

Read from the notebooks' sources, without a kernel: each graded cell of the solutions is
graded against torch.autograd of the notebook's own forward cell on the notebook's own data
(the setup cells run here, without the magic), and every gradient must be right. Stored
outputs (once the notebooks are executed) must show no answer outside the Reveal folds.
"""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

import pytest

from einsum_magic.grade import grade

sys.path.insert(0, str(Path(__file__).parent))
import grade_cases as cases  # noqa: E402

FOLDER = Path(__file__).resolve().parents[1] / "notebooks"


def _cells(name):
    nb = json.loads((FOLDER / name).read_text(encoding="utf-8"))
    return [c for c in nb["cells"] if c["cell_type"] == "code"]


def _source(cell) -> str:
    return "".join(cell["source"])


def _body(cell) -> str:
    return _source(cell).split("\n", 1)[1]


def _namespaces(name):
    """(namespace before, namespace after) each forward (-o NAME) cell, by NAME."""
    ns, out = {}, {}
    for cell in _cells(name):
        source = _source(cell)
        first = source.split("\n", 1)[0]
        if first.startswith("%load_ext"):
            source = source.split("\n", 1)[1]
        match = re.match(r"%%einsum_grad -o (\w+)( --exercise)?$", first)
        if match:
            before = dict(ns)
            exec(_body(cell), ns)
            out[match.group(1)] = (before, _body(cell), dict(ns))
        elif not first.startswith("%%"):
            exec(source, ns)
    return out


def _graded_cells(name):
    return [(re.match(r"%%einsum_grad --grade (\w+)", _source(c)).group(1), c)
            for c in _cells(name) if _source(c).startswith("%%einsum_grad --grade")]


def test_solutions_are_right_line_by_line():
    forwards = _namespaces("05_backprop_ninja_solutions.ipynb")
    names = {"fwd": cases.GRADIENTS, "head": cases.HEAD_GRADIENTS}
    graded = _graded_cells("05_backprop_ninja_solutions.ipynb")
    assert [of for of, _ in graded] == ["fwd", "head"]
    for of, cell in graded:
        before, forward, after = forwards[of]
        reference = cases.reference(forward, before, names[of])
        g = grade(_body(cell), cases.learner(_body(cell), after), reference)
        assert not g.failed and g.counts["missing"] == 0, g.summary
    # the makemore answer is the lecture's own, line by line
    assert _body(graded[0][1]).strip() == cases.SOLUTION.strip()
    assert forwards["fwd"][1].strip() == cases.FORWARD.strip()


def test_exercise_ships_blanks_and_shows_no_answer():
    graded = _graded_cells("05_backprop_ninja_exercise.ipynb")
    blanks = [(of, c) for of, c in graded if "raises-exception" not in c["metadata"].get("tags", [])]
    assert [of for of, _ in blanks] == ["fwd", "head"]
    for (of, cell), names in zip(blanks, (cases.GRADIENTS, cases.HEAD_GRADIENTS)):
        lines = _body(cell).splitlines()
        assert [line.split(" = ")[0] for line in lines] == [f"d{n}" for n in names]
        assert all(line.split(" = ", 1)[1].startswith("...") for line in lines)
    answers = [line.split(" = ", 1)[1] for line in
               (cases.SOLUTION + cases.HEAD_SOLUTION).splitlines()
               if " = " in line and line.startswith("d") and "zeros_like" not in line
               and len(line.split(" = ", 1)[1]) > 8]
    assert len(answers) >= 25
    for cell in _cells("05_backprop_ninja_exercise.ipynb"):
        for out in cell.get("outputs", []):
            data = out.get("data", {})
            plain = "".join(data.get("text/plain", "")) + "".join(out.get("text", ""))
            page = re.sub(r'(?s)<details class="eg-reveal">.*?</details>', "",
                          "".join(data.get("text/html", "")))
            for answer in answers:
                assert answer not in plain and answer not in page, answer


def test_the_feedback_cell_is_wrong_for_the_right_reason():
    forwards = _namespaces("05_backprop_ninja_exercise.ipynb")
    before, forward, after = forwards["fwd"]
    (cell,) = [c for of, c in _graded_cells("05_backprop_ninja_exercise.ipynb")
               if "raises-exception" in c["metadata"].get("tags", [])]
    g = grade(_body(cell), cases.learner(_body(cell), after),
              cases.reference(forward, before, cases.GRADIENTS))
    assert g.failed and g.first_wrong.target == "dlogprobs" and g.first_wrong.reason == "sign"


@pytest.mark.parametrize("name", ["05_backprop_ninja_exercise.ipynb",
                                  "05_backprop_ninja_solutions.ipynb"])
def test_no_download(name):
    text = "".join(_source(c) for c in _cells(name))
    assert "open(" not in text and "http" not in text and "urlretrieve" not in text
