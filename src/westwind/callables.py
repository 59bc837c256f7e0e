"""`package.module:function` specs in a recipe (verifiers, judge functions), imported by name."""

from __future__ import annotations

import importlib
from collections.abc import Callable

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
