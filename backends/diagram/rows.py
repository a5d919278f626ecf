"""Rows of the wires inside one cell of a circuit diagram: how each input's and output's
axes are stacked, so that carried wires run straight, a contraction's cups close on their
own pairs of wires, and an op that drops axes keeps the rows of those it keeps."""

from __future__ import annotations

from nncircuit.types.tensor import TensorType

from nncircuit.backends.diagram.layout import STAGGER

R = 16.0  # distance between two wires


def rows_y(rows, top: float = 0.0) -> list[float]:
    return [top + R / 2 + r * R for r in rows]


def assign_rows(in_types, out_types, carried: frozenset[str] | set[str], home: int = 0, order=None,
                stack=None):
    """Rows of each input's and output's wires inside one cell. Inputs are stacked with a
    free row between them, top to bottom in the slot order `stack` (by default their own),
    each input's axes top to bottom in `order[i]` (by default their own); the outputs sit
    where most carried wires run straight through (on a tie, level with input `home`)."""
    in_rows: list[list[int]] = [[] for _ in in_types]
    r = 0
    for i in stack if stack is not None else range(len(in_types)):
        n = max(in_types[i].rank, 1)
        seq = list(order[i]) if order is not None and len(order[i]) == n else list(range(n))
        in_rows[i] = [r + seq.index(k) for k in range(n)]
        r += n + 1
    span = r - 1 if in_types else 0
    at: dict[str, list[tuple[int, object]]] = {}
    for t, rows in zip(in_types, in_rows):
        for a, row in zip(t.axes, rows):
            at.setdefault(a.name, []).append((row, a.size))
    starts = {rows[0] for rows in in_rows}

    def score(off: int, t: TensorType):
        straight = same = 0
        for i, a in enumerate(t.axes):
            for row, size in at.get(a.name, ()):
                if row == off + i:
                    if a.name in carried and size == a.size:
                        straight += 1
                    else:
                        same += 1
        return straight, same, off == in_rows[home][0] if in_rows else True, off in starts, -abs(off)

    out_rows: list[list[int]] = []
    off = None
    for t in out_types:
        n = max(t.rank, 1)
        if off is None:
            off = max(range(-(n - 1), max(span, 1)), key=lambda o: score(o, t))
        out_rows.append(list(range(off, off + n)))
        off += n + 1
    kept = _kept_rows(in_types, in_rows, out_types)
    if kept is not None:
        out_rows = [kept]
    low = min([rows[0] for rows in in_rows + out_rows], default=0)
    in_rows = [[x - low for x in rows] for rows in in_rows]
    out_rows = [[x - low for x in rows] for rows in out_rows]
    nrows = max([rows[-1] for rows in in_rows + out_rows], default=0) + 1
    return in_rows, out_rows, nrows


def _kept_rows(in_types, in_rows, out_types) -> list[int] | None:
    """An op that only drops axes (an index, a reduction): its output keeps the rows its
    axes came in on, and a dropped wire ends at the op, so no kept wire changes height
    inside the op's box. None for any other op."""
    if len(in_types) != 1 or len(out_types) != 1:
        return None
    t_in, t_out = in_types[0], out_types[0]
    if not t_out.axes or t_out.rank >= t_in.rank or not all(t_in.has(n) for n in t_out.names):
        return None
    idx = [t_in.index(n) for n in t_out.names]
    if idx != sorted(idx):
        return None
    return [in_rows[0][i] for i in idx]


def preferred_slots(in_types, out_types) -> tuple[int, ...]:
    """Input slots ordered by how much of the first output they carry: axes with the same
    name and size first, then axes with the same name."""
    if not out_types:
        return tuple(range(len(in_types)))
    out = out_types[0]
    same = {(a.name, a.size) for a in out.axes}
    names = set(out.names)

    def key(i):
        t = in_types[i]
        return (-len(same & {(a.name, a.size) for a in t.axes}), -len(names & set(t.names)), i)

    return tuple(sorted(range(len(in_types)), key=key))


def merge_spread(in_rows, out_rows, in_types) -> float:
    """Extra width a merge needs so that an operand's wires, moving to the output's rows,
    bend one after another (spread) instead of as one steep stroke."""
    out = out_rows[0] if out_rows else []
    extra = 0.0
    for rows in in_rows:
        shift = max([abs(a - b) for a, b in zip(rows, out)] + [0])
        if shift:
            extra = max(extra, 4.0 * shift + STAGGER * (len(rows) - 1))
    return extra


def cup_order(in_types, out_types):
    """A contraction of two inputs: the first input's summed wires last and the second's
    first, innermost pair adjacent, so that each cup closes on its own pair of wires with
    no other wire inside it (the wires cross, if they must, before the op)."""
    if len(in_types) != 2:
        return None
    a, b = in_types
    kept = {n for t in out_types for n in t.names}
    summed = [n for n in a.names if b.has(n) and n not in kept]
    if not summed:
        return None
    first = [i for i, n in enumerate(a.names) if n not in summed] + [a.index(n) for n in summed]
    second = [b.index(n) for n in reversed(summed)] + [i for i, n in enumerate(b.names) if n not in summed]
    return [first, second]
