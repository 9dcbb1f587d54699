"""The protocol package's names, imported lazily (airlaunch/protocol/__init__.py): the imports type checkers
see, the table the package imports from, ``__all__`` and the modules themselves agree, and importing the
package loads none of its modules until a name is used."""

from __future__ import annotations

import ast
import importlib
import json
import subprocess
import sys
from pathlib import Path

import airlaunch.protocol as protocol

INIT = Path(protocol.__file__)


def _typed_imports() -> dict[str, str]:
    """name -> module, from the ``if TYPE_CHECKING:`` block."""
    tree = ast.parse(INIT.read_text())
    [guard] = [n for n in tree.body if isinstance(n, ast.If) and ast.unparse(n.test) == "TYPE_CHECKING"]
    return {
        alias.name: node.module.rsplit(".", 1)[1]
        for node in guard.body
        if isinstance(node, ast.ImportFrom) and node.module
        for alias in node.names
    }


def test_the_typed_imports_the_table_and_all_agree() -> None:
    table = {name: module for module, names in protocol._MODULES.items() for name in names}
    assert _typed_imports() == table
    assert sorted(protocol.__all__) == sorted(table)


def test_every_name_is_its_modules_own_object() -> None:
    for name, module in sorted(_typed_imports().items()):
        assert getattr(protocol, name) is getattr(importlib.import_module(f"airlaunch.protocol.{module}"), name)


def test_an_unknown_name_is_an_attribute_error() -> None:
    try:
        protocol.NoSuchName  # type: ignore[attr-defined]  # noqa: B018
    except AttributeError as exc:
        assert "NoSuchName" in str(exc)
    else:
        raise AssertionError("an unknown name must not be found")


def test_the_package_loads_a_module_only_when_one_of_its_names_is_used() -> None:
    code = (
        "import sys, json; import airlaunch.protocol as p; before = sorted(m for m in sys.modules "
        "if m.startswith('airlaunch.protocol.')); p.ResultLayout; "
        "print(json.dumps([before, sorted(m for m in sys.modules if m.startswith('airlaunch.protocol.'))]))"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60)
    before, after = json.loads(done.stdout)
    assert before == []
    assert after == ["airlaunch.protocol.checks", "airlaunch.protocol.identity", "airlaunch.protocol.layout"]
