"""The README's runnable snippets (each Python block after a `<!-- tested: tests/test_readme.py -->`
marker) run as written."""

import re
from pathlib import Path

import pytest

README = Path(__file__).resolve().parent.parent / "README.md"
MARKED = re.compile(r"<!-- tested: tests/test_readme.py -->\s*```python\n(.*?)```", re.S)


def _snippets() -> list[str]:
    return MARKED.findall(README.read_text())


def test_there_are_tested_snippets():
    assert len(_snippets()) >= 1


@pytest.mark.parametrize("index", range(len(_snippets())))
def test_snippet_runs(index, capsys):
    exec(compile(_snippets()[index], f"README.md snippet {index}", "exec"), {"__name__": "readme"})
    assert capsys.readouterr().out.strip(), "each snippet prints what it shows"
