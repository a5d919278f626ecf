"""Timing side by side: warm up, then run the contenders in alternating order, N rounds,
and keep every sample. Times are medians; a ratio is the median over rounds of the ratio
of two contenders' times in the same round (paired), which cancels load that drifts
slowly over a run, as other processes on a shared machine make it do."""

from __future__ import annotations

import math
import statistics
import time
from dataclasses import dataclass
from collections.abc import Callable


@dataclass(frozen=True)
class Stats:
    """Samples of one contender, in seconds."""

    samples: tuple[float, ...]

    @property
    def median(self) -> float:
        return statistics.median(self.samples)

    @property
    def best(self) -> float:
        return min(self.samples)

    @property
    def spread(self) -> float:
        """Interquartile range over the median: how far one run's figure can be trusted."""
        if len(self.samples) < 4:
            return (max(self.samples) - min(self.samples)) / self.median
        q = statistics.quantiles(self.samples, n=4)
        return (q[2] - q[0]) / self.median

    def median_ci(self, z: float = 1.96) -> tuple[float, float]:
        """A distribution-free 95% confidence interval of the median: the order statistics
        of ranks (n − z√n)/2 and 1 + (n + z√n)/2 (binomial, normal approximation)."""
        xs = sorted(self.samples)
        n = len(xs)
        lo = max(1, math.floor((n - z * math.sqrt(n)) / 2))
        hi = min(n, math.ceil(1 + (n + z * math.sqrt(n)) / 2))
        return xs[lo - 1], xs[hi - 1]

    def ratio_json(self) -> dict:
        """For samples that are ratios (no unit)."""
        lo, hi = self.median_ci()
        return {
            "median": round(self.median, 4),
            "ci95": [round(lo, 4), round(hi, 4)],
            "spread": round(self.spread, 4),
            "n": len(self.samples),
            "samples": [round(x, 6) for x in self.samples],
        }

    def to_json(self) -> dict:
        return {
            "median_s": self.median,
            "best_s": self.best,
            "spread": round(self.spread, 4),
            "n": len(self.samples),
            "samples": [round(x, 6) for x in self.samples],
        }


def side_by_side(
    contenders: dict[str, Callable[[], object]],
    *,
    warmup: int,
    repeat: int,
    budget_s: float = 0.0,
    max_repeat: int = 100,
    sync: Callable[[], None] | None = None,
) -> dict[str, Stats]:
    """Time each callable in `repeat` rounds after `warmup` rounds, alternating the order
    of the contenders from one round to the next so that drift (heat, caches, other load)
    falls on all of them alike. With `budget_s`, cheap contenders get more rounds: as many
    as fit in the budget (by the warm-up's pace), at least `repeat`, at most `max_repeat`.
    `sync` (e.g. torch.cuda.synchronize) runs before each clock reading."""
    names = list(contenders)
    per_round = 0.0
    for _ in range(warmup):
        t0 = time.perf_counter()
        for name in names:
            contenders[name]()
        if sync is not None:
            sync()
        per_round = time.perf_counter() - t0  # the last warm-up round sets the pace
    if budget_s and warmup:
        repeat = max(repeat, min(max_repeat, int(budget_s / max(per_round, 1e-9))))
    samples: dict[str, list[float]] = {n: [] for n in names}
    for i in range(repeat):
        for name in names if i % 2 == 0 else reversed(names):
            fn = contenders[name]
            t0 = time.perf_counter()
            fn()
            if sync is not None:
                sync()
            samples[name].append(time.perf_counter() - t0)
    return {n: Stats(tuple(s)) for n, s in samples.items()}


def repeat_time(fn: Callable[[], object], *, repeat: int, warmup: int = 1) -> Stats:
    """One contender: `warmup` untimed calls, then `repeat` timed ones."""
    return side_by_side({"x": fn}, warmup=warmup, repeat=repeat)["x"]


def best_ratio(a: Stats, b: Stats) -> float:
    """Ratio of the best (fastest) samples: interference from other processes only ever
    adds time, so on a loaded machine this is the steadier estimate of the two."""
    return round(a.best / b.best, 4)


def paired_ratio(a: Stats, b: Stats) -> Stats:
    """a / b round by round (both from one side_by_side call); its median is the ratio."""
    if len(a.samples) != len(b.samples):
        raise ValueError("paired_ratio needs samples from the same rounds")
    return Stats(tuple(x / y for x, y in zip(a.samples, b.samples)))
