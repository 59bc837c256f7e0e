"""Every user-facing error type and its exit code, mapped once.

Bad input (recipe, data, command line) exits 2 with one line `error: FILE: KEY: problem`, before anything loads
and before anything is written. A run that cannot finish as asked (failed prompts, a missing backend) exits 1.
"""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Iterator
from pathlib import Path

BAD_INPUT = 2
RUN_FAILED = 1


class RecipeError(Exception):
    """Bad input: reported as `file: key: problem`, exit code 2, no traceback."""

    exit_code = BAD_INPUT

    def __init__(self, file: str | Path, key: str, problem: str):
        super().__init__(f"{file}: {key}: {problem}")
        self.file, self.key, self.problem = str(file), key, problem


class DataError(ValueError):
    """A dataset that cannot be used: names the dataset and, for a bad row, its index. Exit code 2."""

    exit_code = BAD_INPUT


class RunError(RuntimeError):
    """The run cannot finish as asked (e.g. a merge with missing prompts, an unreachable backend): exit 1."""

    exit_code = RUN_FAILED


USER_ERRORS = (RecipeError, DataError, RunError)


@contextlib.contextmanager
def exit_on_user_error() -> Iterator[None]:
    """Print a user-facing error as one line and exit with its code: no traceback."""
    try:
        yield
    except USER_ERRORS as error:
        print(f"error: {error}", file=sys.stderr)
        raise SystemExit(error.exit_code) from None
