"""Intervals and tests for reported numbers."""

from __future__ import annotations

import pytest

from westwind.evaluation.significance import paired_difference_interval


def test_paired_difference_interval():
    low, high = paired_difference_interval(61, 19, 500)
    assert low < 42 / 500 < high
    assert 0.04 < low < 0.06 and 0.1 < high < 0.13  # Agresti-Min: ±1.96·sqrt(81 - 42²/502)/502 around 42/502
    assert (low + high) / 2 == pytest.approx(42 / 502)
    assert paired_difference_interval(0, 0, 100)[0] < 0 < paired_difference_interval(0, 0, 100)[1]
    assert paired_difference_interval(0, 0, 0) == (-1.0, 1.0)
