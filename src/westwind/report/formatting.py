"""Numbers and intervals as the report prints them."""

from __future__ import annotations

import math
from typing import Any


def percent(value: float | None) -> str:
    return "n/a" if value is None or math.isnan(value) else f"{100 * value:.1f}%"


def interval(ci: Any) -> str:
    if not isinstance(ci, (list, tuple)) or len(ci) != 2 or any(v is None for v in ci):
        return "n/a"
    return f"{percent(ci[0])} – {percent(ci[1])}"


def number(value: float | None, digits: int = 4) -> str:
    return "n/a" if value is None else f"{value:.{digits}g}"


def accuracy_text(accuracy: dict[str, Any]) -> str:
    """e.g. `41.5% (83/200, 95% CI 34.9% – 48.4%)`."""
    return (
        f"{percent(accuracy.get('rate'))} ({accuracy.get('correct')}/{accuracy.get('total')}, "
        f"95% CI {interval(accuracy.get('ci95'))})"
    )


def order_flip_text(flips: dict[str, Any]) -> str:
    """The judge's order-flip rate: how often its outcome changed when the candidates were shown reversed."""
    return (
        f"{percent(flips.get('rate'))} ({flips.get('flipped')} of {flips.get('checked')} {flips.get('what')})"
    )


def win_rate_text(win: dict[str, Any]) -> str:
    failed = f", {win['failed']} failed" if win.get("failed") else ""
    p_value = f"; sign test p = {win['sign_test_p']:.2g}" if "sign_test_p" in win else ""
    return (
        f"{percent(win.get('rate'))} (95% CI {interval(win.get('ci95'))}; wins {win.get('wins')}, "
        f"ties {win.get('ties')}, losses {win.get('losses')}{failed}; ties count half{p_value})"
        + (f"; order-flip rate {order_flip_text(win['order_flips'])}" if win.get("order_flips") else "")
    )
