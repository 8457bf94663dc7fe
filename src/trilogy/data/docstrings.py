"""The ``stdlib-docstrings`` corpus: (function source, first docstring line) pairs taken with ``ast`` from the
running interpreter's own standard library, a small code-summarisation task any machine has.

Every function and method (``def`` and ``async def``) with a docstring and at least one other statement
gives one pair: the source is the function's code with the docstring removed and the indentation stripped; the
target is the first non-empty line of the docstring. Test packages, ``site-packages`` and files that do not
parse are skipped. Modules are visited in sorted path order and functions in source order, so the pairs and
their count depend only on the interpreter. They are built once and cached as JSONL (one object per line with
``module``, ``source`` and ``target``) under the cache folder, keyed by the interpreter's version and path.
"""

from __future__ import annotations

import ast
import hashlib
import json
import sys
import sysconfig
import textwrap
from collections.abc import Iterator
from pathlib import Path

from .cache import cache_dir, write_atomically

SKIPPED_DIRS = {"test", "tests", "idle_test", "site-packages", "dist-packages", "__pycache__"}


def stdlib_root() -> Path:
    return Path(sysconfig.get_paths()["stdlib"])


def docstring_pairs_file() -> Path:
    """The cached JSONL of pairs for this interpreter, built on first use."""
    root = stdlib_root()
    key = hashlib.sha256(f"{sys.version}|{root}".encode()).hexdigest()[:12]
    path = cache_dir() / f"stdlib-docstrings-{sys.version_info.major}.{sys.version_info.minor}-{key}.jsonl"
    if not path.exists():
        lines = (json.dumps({"module": module, "source": source, "target": target}) + "\n"
                 for module, source, target in stdlib_pairs(root))
        write_atomically(path, "".join(lines).encode("utf-8"))
    return path


def stdlib_pairs(root: Path) -> Iterator[tuple[str, str, str]]:
    """(module, source, target) for every documented function under ``root``, in a fixed order."""
    for path in sorted(root.rglob("*.py")):
        relative = path.relative_to(root)
        if SKIPPED_DIRS & set(relative.parts[:-1]) or relative.name.startswith("test_"):
            continue
        try:
            text = path.read_text(encoding="utf-8")
            tree = ast.parse(text)
        except (SyntaxError, UnicodeDecodeError, ValueError):
            continue
        module = ".".join(relative.with_suffix("").parts).removesuffix(".__init__")
        for source, target in module_pairs(text, tree):
            yield module, source, target


def module_pairs(text: str, tree: ast.Module) -> Iterator[tuple[str, str]]:
    """(source without docstring, first docstring line) for each documented function of one module."""
    lines = text.splitlines(keepends=True)
    functions = [node for node in ast.walk(tree) if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef))]
    for node in sorted(functions, key=lambda node: (node.lineno, node.col_offset)):
        docstring = ast.get_docstring(node)
        if not docstring or len(node.body) < 2:
            continue
        target = next((line.strip() for line in docstring.splitlines() if line.strip()), "")
        doc_node = node.body[0]
        kept = lines[node.lineno - 1:doc_node.lineno - 1] + lines[doc_node.end_lineno:node.end_lineno]
        source = textwrap.dedent("".join(kept)).strip("\n")
        if target and source:
            yield source, target
