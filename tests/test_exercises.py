"""Every notebook ends with its exercises, 3 to 5 of them, each saying what the student should see, and has worked
answers in ``notebooks/answers/<name>.md``, one per exercise; each links to the other, and every python snippet in
either compiles. A lecturer can hand the notebooks out as they are."""

from __future__ import annotations

import re
import textwrap
from pathlib import Path

import nbformat
import pytest

NOTEBOOKS = Path(__file__).resolve().parents[1] / "notebooks"
ANSWERS = NOTEBOOKS / "answers"
NAMES = sorted(p.stem for p in NOTEBOOKS.glob("[0-9][0-9]_*.ipynb"))
HEADING = re.compile(r"^## Exercises[ \t]*$", re.M)
ITEM = re.compile(r"^(\d+)\. ", re.M)  # a numbered item at the start of a line (its text is indented below it)
PYTHON = re.compile(r"^([ \t]*)```python[ \t]*\n(.*?)^\1```", re.M | re.S)


def exercises(name: str) -> str:
    """The notebook's exercises: its markdown from the ``## Exercises`` heading to the end, which must hold no code
    cell."""
    cells = nbformat.read(NOTEBOOKS / f"{name}.ipynb", as_version=4).cells
    at = [i for i, c in enumerate(cells) if c.cell_type == "markdown" and HEADING.search(c.source)]
    assert at, f"{name} has no '## Exercises' heading"
    assert all(c.cell_type == "markdown" for c in cells[at[-1]:]), f"{name}: a code cell follows its exercises"
    text = "\n\n".join(c.source for c in cells[at[-1]:])
    return text[HEADING.search(text).start():]


def answers(name: str) -> str:
    path = ANSWERS / f"{name}.md"
    assert path.is_file(), f"{name} has no worked answers: write notebooks/answers/{name}.md"
    return path.read_text(encoding="utf-8")


def items(text: str) -> list[tuple[int, str]]:
    """The numbered items of a text: ``(number, the item's text up to the next item)``."""
    marks = list(ITEM.finditer(text))
    ends = [m.start() for m in marks[1:]] + [len(text)]
    return [(int(m.group(1)), text[m.start():end]) for m, end in zip(marks, ends)]


def snippets(text: str) -> list[str]:
    """The python of every fenced ``python`` block, its indentation (inside a list item) removed."""
    return [textwrap.dedent(m.group(2)) for m in PYTHON.finditer(text)]


def test_there_are_notebooks():
    assert len(NAMES) >= 10, NAMES


@pytest.mark.parametrize("name", NAMES)
def test_the_notebook_ends_with_three_to_five_exercises_each_saying_what_to_see(name):
    found = items(exercises(name))
    assert 3 <= len(found) <= 5, f"{name} has {len(found)} exercises: 3 to 5, please"
    assert [n for n, _ in found] == list(range(1, len(found) + 1)), f"{name}: exercises numbered 1, 2, 3 ..."
    for n, text in found:
        assert "what you should see" in text.lower(), f"{name}, exercise {n}: say what the student should see"


@pytest.mark.parametrize("name", NAMES)
def test_the_answers_have_one_answer_per_exercise(name):
    asked, answered = items(exercises(name)), items(answers(name))
    assert answers(name).startswith("# Answers: "), f"answers/{name}.md opens with '# Answers: <number> · <title>'"
    assert [n for n, _ in answered] == [n for n, _ in asked], (
        f"answers/{name}.md answers {len(answered)} exercises, the notebook asks {len(asked)}")


@pytest.mark.parametrize("name", NAMES)
def test_the_notebook_and_its_answers_link_to_each_other(name):
    assert f"](answers/{name}.md)" in exercises(name), f"{name}'s exercises must link to answers/{name}.md"
    assert f"](../{name}.ipynb)" in answers(name), f"answers/{name}.md must link back to ../{name}.ipynb"


@pytest.mark.parametrize("name", NAMES)
def test_every_python_snippet_compiles(name):
    for where, text in ((f"{name}.ipynb, exercises", exercises(name)), (f"answers/{name}.md", answers(name))):
        for i, src in enumerate(snippets(text)):
            compile(src, f"{where}, snippet {i + 1}", "exec")


def test_the_helpers_find_what_they_look_for():
    text = ("## Exercises\n\n1. **One.** Do it. *What you should see:* 1.\n2. **Two.**\n\n   ```python\n"
            "   x = [1,\n        2]\n   ```\n\n   *What you should see:* 2.\n\nWorked answers: [a](answers/x.md).")
    assert [n for n, _ in items(text)] == [1, 2]
    assert snippets(text) == ["x = [1,\n     2]\n"]
    with pytest.raises(SyntaxError):
        compile(snippets(text.replace("2]", "2"))[0], "broken", "exec")
