"""Frames left out, counted by reason: the one accounting every reader and command shares, so nothing is lost
silently and the terminal gets one warning per reason instead of one per frame."""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path

EXAMPLES = 3  # names shown per reason


class Skipped:
    """Counts and the first few names of the frames a reader or command could not use, by reason."""

    def __init__(self) -> None:
        self.counts: Counter = Counter()
        self.examples: dict[str, list[str]] = {}

    def add(self, reason: str, name: str = "", count: int = 1) -> None:
        self.counts[reason] += count
        names = self.examples.setdefault(reason, [])
        if name and len(names) < EXAMPLES:
            names.append(name)

    def update(self, other: Skipped) -> None:
        for reason, count in other.counts.items():
            for name in other.examples.get(reason, []):
                self.add(reason, name, 0)
            self.counts[reason] += count

    def __bool__(self) -> bool:
        return bool(self.counts)

    def total(self) -> int:
        return sum(self.counts.values())

    def as_dict(self) -> dict[str, int]:
        return dict(sorted(self.counts.items()))

    def lines(self) -> list[str]:
        """One line per reason: count, reason and the first names."""
        out = []
        for reason, count in sorted(self.counts.items()):
            names = self.examples.get(reason, [])
            more = ", ..." if count > len(names) else ""
            listing = f" ({', '.join(names)}{more})" if names else ""
            out.append(f"skipped {count} frame{'s' * (count != 1)}: {reason}{listing}")
        return out

    def warn(self, log: logging.Logger, where: str) -> None:
        for line in self.lines():
            log.warning("%s: %s", where, line)


class LeavesOut:
    """For readers: the frames left out when the reader opened, by color-frame number, so that a ``@START:STOP``
    block reports only its own."""

    def leave_out(self, number: int, reason: str, name: str) -> None:
        self.__dict__.setdefault("left_out", []).append((number, reason, name))

    def skipped_where(self, keep: Callable[[int], bool]) -> Skipped:
        skipped = Skipped()
        for number, reason, name in self.__dict__.get("left_out", []):
            if keep(number):
                skipped.add(reason, name)
        return skipped

    @property
    def skipped(self) -> Skipped:
        return self.skipped_where(lambda _: True)


class FrameError(OSError):
    """One frame's file exists but cannot be read; ``reason`` groups it in a ``Skipped`` report."""

    def __init__(self, reason: str, path: str | Path) -> None:
        super().__init__(f"{path}: {reason}")
        self.reason, self.path = reason, Path(path)


def scorable_frames(frames: object, indices: Iterable[int], skipped: Skipped, need_hr: bool = True
                    ) -> Iterator[tuple[int, object]]:
    """``(index, frame)`` for the frames at ``indices`` that can be read and have HR ground truth (with ``need_hr``
    False: any depth, LR or HR); the others are counted in ``skipped`` by reason (what evaluation and calibration
    need)."""
    for i in indices:
        try:
            frame = frames[i]
        except FrameError as err:
            skipped.add(err.reason, err.path.name)
            continue
        if frame.depth_hr is None and (need_hr or frame.depth_lr is None):
            skipped.add("no HR ground truth" if need_hr else "no depth", frame.name)
            continue
        yield i, frame


def skipped_of(source: object) -> Skipped:
    """What a frame source (a reader, a Subset or Concat of readers) left out when it opened."""
    return getattr(source, "skipped", None) or Skipped()
