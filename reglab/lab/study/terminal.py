"""The study's leaderboard in the terminal, fitted to its width."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from reglab.lab.study.formats import fmt, has_accuracy, missing_words, p_text, pm

SHORT = {"inconclusive": "inconcl."}
DROP_FIRST = ("stop ep", "zeros", "best ep", "gap", "seeds", "test acc", "vs base", "p")  # at narrow widths


def fit_columns(columns: Sequence[tuple[str, list[str]]], width: int, keep: int = 1) -> list[int]:
    """Which columns of a rich table (header, cells) fit ``width`` terminal columns: the
    indices kept, dropping those named in ``DROP_FIRST`` in its order; the first ``keep``
    (the arm's name) and any not named there are never dropped."""
    need = [max(len(h), *(len(c) for c in cells)) if cells else len(h) for h, cells in columns]
    kept = list(range(len(columns)))

    def total() -> int:  # each column: its text, a space either side, a border
        return sum(need[i] + 3 for i in kept) + 1

    for name in DROP_FIRST:
        if total() <= width:
            break
        kept = [i for i in kept if i < keep or columns[i][0] != name]
    return kept


def print_leaderboard(board: Sequence[dict[str, Any]], title: str, width: int | None = None) -> None:
    """The leaderboard in the terminal, fitted to its width (``width``, else the console's):
    at narrow widths the least telling columns are left out, never an arm's name."""
    from rich.console import Console
    from rich.table import Table

    acc = has_accuracy(board)
    columns: list[tuple[str, list[str]]] = [
        ("arm", [e["arm"] for e in board]),
        ("seeds", [str(e["seeds"]) for e in board]),
        *([("test acc", [pm(e["test_acc"], e["test_acc_std"], "±") for e in board])] if acc else []),
        ("test loss", [pm(e["test_loss"], e["test_loss_std"], "±") for e in board]),
        ("vs base", ["–" if e["verdict"] == "baseline" else fmt(e["change"], "+.0%") for e in board]),
        ("best ep", [fmt(e["best_epoch"], ".0f") for e in board]),
        ("stop ep", [fmt(e["stopped_epoch"], ".0f") for e in board]),
        ("gap", [fmt(e["gap"], ".3f") for e in board]),
        ("zeros", [fmt(e["zero_frac"], ".0%") for e in board]),
        ("p", [p_text(e["p_value"]) for e in board]),
        ("verdict", [SHORT.get(e["verdict"], e["verdict"]) for e in board]),
    ]
    console = Console() if width is None else Console(width=width)
    kept = fit_columns(columns, console.width)
    table = Table(title=title)
    for i in kept:
        name = columns[i][0]
        table.add_column(name, justify="left" if name in ("arm", "verdict") else "right", no_wrap=True,
                         min_width=len(max(columns[i][1], key=len, default="")) if name == "arm" else None)  # fmt: skip
    for row, e in enumerate(board):
        style = {"better": "green", "worse": "red", "diverged": "red italic", "baseline": "bold"}.get(e["verdict"])
        table.add_row(*(columns[i][1][row] for i in kept), style=style)
    console.print(table)
    left = [columns[i][0] for i in range(len(columns)) if i not in kept]
    if left:
        console.print(f"(not shown at {console.width} columns: {', '.join(left)}; see the report)",
                      style="dim", highlight=False)  # fmt: skip
    if getattr(board, "missing", None):
        console.print(
            f"not finished yet: {missing_words(board.missing)}; run the study again to finish them",
            style="yellow",
            highlight=False,
        )
