"""Text for people: the one table layout and the one number formats every command prints."""
from __future__ import annotations


def table(rows, right=(), rule=True) -> list:
    """Lines of a plain-text table: `rows[0]` is the header, columns in `right` (indices) are right-aligned,
    a rule of dashes goes under the header when `rule`; trailing blanks are trimmed."""
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]

    def line(row):
        return "  ".join(cell.rjust(w) if i in right else cell.ljust(w)
                         for i, (cell, w) in enumerate(zip(row, widths))).rstrip()
    lines = [line(row) for row in rows]
    if rule:
        lines.insert(1, "  ".join("-" * w for w in widths))
    return lines


def human(n: float) -> str:
    """A count in three significant digits with k, M or G: 2293000 -> '2.29M'."""
    for unit, scale in (("G", 1e9), ("M", 1e6), ("k", 1e3)):
        if abs(n) >= scale:
            return f"{n / scale:.3g}{unit}"
    return f"{n:g}"


def counted(n: int, noun: str) -> str:
    """`1 block`, `9 blocks`: a count with its noun, singular for one."""
    return f"{n:,} {noun}" + ("" if n == 1 else "s")


def memory(n: int) -> str:
    """Bytes in binary units: 1572864 -> '1.5 MiB'."""
    for unit, scale in (("GiB", 2 ** 30), ("MiB", 2 ** 20), ("KiB", 2 ** 10)):
        if n >= scale:
            return f"{n / scale:.1f} {unit}"
    return f"{n} B"


def shape_text(shape) -> str:
    """A shape as `64x20x24x24`; a scalar (no axes) says so."""
    return "x".join(str(d) for d in shape) if shape else "scalar"
