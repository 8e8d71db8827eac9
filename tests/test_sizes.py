"""Small modules with one job: no module of ``src/ifscope`` over ``MODULE_LINES`` lines, no function over
``FUNCTION_LINES`` unless its ``def`` line (or the line after it) says why in a comment ``# long: <reason>``."""

from __future__ import annotations

import ast
from pathlib import Path

SRC = Path(__file__).resolve().parents[1] / "src" / "ifscope"
MODULE_LINES = 300
FUNCTION_LINES = 60
REASON = "# long:"


def _excused(lines: list[str], node: ast.AST) -> bool:
    """A ``# long: <reason>`` comment (with a reason) on the def line or the line after it."""
    for line in lines[node.lineno - 1: node.lineno + 1]:
        _, sep, reason = line.partition(REASON)
        if sep and reason.strip():
            return True
    return False


def oversized(root: Path, module_lines: int = MODULE_LINES, function_lines: int = FUNCTION_LINES) -> list[str]:
    """``path: N lines`` for each module over ``module_lines`` and ``path:line name: N lines`` for each function
    (methods and nested functions included, decorators not counted) over ``function_lines`` without a reason."""
    found = []
    for path in sorted(root.rglob("*.py")):
        text = path.read_text()
        lines = text.splitlines()
        name = path.relative_to(root.parent)
        if len(lines) > module_lines:
            found.append(f"{name}: {len(lines)} lines (at most {module_lines})")
        for node in ast.walk(ast.parse(text)):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                size = node.end_lineno - node.lineno + 1  # type: ignore[operator]
                if size > function_lines and not _excused(lines, node):
                    found.append(f"{name}:{node.lineno} {node.name}: {size} lines (at most {function_lines}, "
                                 f"or say why with '{REASON} <reason>' on its def line)")
    return found


def test_no_module_or_function_of_the_package_is_oversized():
    found = oversized(SRC)
    assert not found, "\n".join(found)


def test_the_size_check_sees_a_long_module_and_an_unexcused_long_function(tmp_path):
    pkg = tmp_path / "ifscope"
    pkg.mkdir()
    body = "".join(f"    x{i} = {i}\n" for i in range(FUNCTION_LINES))
    (pkg / "long.py").write_text(f"def long_one():\n{body}\n\ndef excused():  # long: one table\n{body}"
                                 f"\n\ndef empty_reason():  # long:\n{body}" + "\n" * MODULE_LINES)
    (pkg / "short.py").write_text("def short():\n" + body.split("\n", 1)[1])  # exactly at the limit
    found = oversized(pkg)
    assert len(found) == 3, found
    assert found[0].startswith("ifscope/long.py: ") and "long_one" in found[1] and "empty_reason" in found[2]
