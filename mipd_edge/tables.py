"""Tables as text: aligned columns for terminals, pipe tables for Markdown reports.

Every table the SDK prints or writes (metrics, model comparisons, benchmarks) goes through
``render_table``, so the terminal and ``report.md`` always show the same numbers.
"""

from __future__ import annotations

from typing import Sequence


def render_table(rows: Sequence[Sequence[str]], markdown: bool = False, left: int = 1) -> str:
    """``rows[0]`` is the header; the first ``left`` columns are left-aligned, the rest right."""
    if markdown:
        lines = ["| " + " | ".join(rows[0]) + " |",
                 "|" + "|".join(":---" if i < left else "---:" for i in range(len(rows[0]))) + "|"]
        return "\n".join(lines + ["| " + " | ".join(r) + " |" for r in rows[1:]])
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    lines = ["  ".join(c.ljust(w) if i < left else c.rjust(w) for i, (c, w) in enumerate(zip(r, widths)))
             for r in rows]
    lines.insert(1, "-" * len(lines[0]))
    return "\n".join(lines)
