"""`package.module:function` specs in a recipe (verifiers, judge functions), imported by name."""

from __future__ import annotations

import hashlib
import importlib
import inspect
from collections.abc import Callable
from pathlib import Path

# Modules that recipes name and that moved when the package was grouped by stage: old spelling -> new.
MOVED = {"westwind.demo_tasks": "westwind.demo.tasks", "westwind.demo_teacher": "westwind.demo.teacher"}


class CallableImportError(ValueError):
    """A spec that does not name an importable callable."""


def load_callable(spec: str) -> Callable:
    module_name, _, function_name = spec.partition(":")
    if module_name in MOVED:
        raise CallableImportError(f"{spec!r} moved: write {MOVED[module_name]}:{function_name}")
    try:
        function = getattr(importlib.import_module(module_name), function_name)
    except (ImportError, AttributeError) as error:
        raise CallableImportError(f"{spec!r} cannot be imported: {error}") from None
    if not callable(function):
        raise CallableImportError(f"{spec!r} is not callable")
    return function


def source_digest(spec: str) -> str:
    """sha256 of the source file of the module defining `spec`'s callable: editing the function (or
    anything else in its module) changes it. Code the function calls in other modules is not covered."""
    function = load_callable(spec)
    module = inspect.getmodule(function)
    try:
        path = inspect.getsourcefile(module) or inspect.getfile(module)
        data = Path(path).read_bytes()
    except (TypeError, OSError):  # a builtin or a module without a file: its name is all there is
        data = f"{spec}:{getattr(module, '__name__', '')}".encode()
    return hashlib.sha256(data).hexdigest()
