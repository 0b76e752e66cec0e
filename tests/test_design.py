"""docs/design.md stays true to the code: every `file.py:name` pointer it gives
names a function or class (or a method, `Class.method`) defined in that file,
every test it names exists, and every Python file of the repo has its row."""
import ast
import re

from conftest import REPO

DESIGN = (REPO / 'docs' / 'design.md').read_text(encoding='utf-8')


def definitions(path):
    """Names defined at the top of a file, and Class.method for its classes' methods."""
    names = set()
    for node in ast.parse(path.read_text(encoding='utf-8')).body:
        if isinstance(node, (ast.FunctionDef, ast.ClassDef)):
            names.add(node.name)
        if isinstance(node, ast.ClassDef):
            names |= {f'{node.name}.{item.name}' for item in node.body if isinstance(item, ast.FunctionDef)}
    return names


def test_every_pointer_names_something_defined_there():
    pointers = re.findall(r'`((?:[\w/]+/)?\w+\.py):([\w.]+)`', DESIGN)
    assert len(pointers) > 30
    missing = [f'{file}:{name}' for file, name in pointers if name not in definitions(REPO / file)]
    assert not missing


def test_every_test_it_names_exists():
    tests = re.findall(r'`(tests/\w+\.py)::(\w+)`', DESIGN)
    assert tests
    assert not [f'{file}::{name}' for file, name in tests if name not in definitions(REPO / file)]


def test_every_python_file_has_its_row():
    """A row of its own for each file at the top, a name in the scripts/ row for the others."""
    scripts_row, = [line for line in DESIGN.splitlines() if line.startswith('| `scripts/*.py` |')]
    assert not [path.name for path in REPO.glob('*.py') if f'\n| `{path.name}` |' not in DESIGN]
    assert not [path.name for path in (REPO / 'scripts').glob('*.py') if f'`{path.name}`' not in scripts_row]
