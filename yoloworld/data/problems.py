"""Non-fatal data problems: one line each (file and reason), counted per kind, summarised at the end.

Fatal problems (an unreadable annotation file, a class-text mismatch) raise `DatasetError` instead.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

# kind -> what happens to the data, shown in the summary
CONSEQUENCES = {
    "missing_image": "image skipped",
    "corrupt_image": "image skipped",
    "truncated_image": "used with its missing part grey",
    "size_mismatch": "boxes kept as annotated",
    "bad_size": "size read from the image",
    "unknown_image": "annotation skipped",
    "duplicate_image_id": "image skipped",
    "unknown_category": "box dropped",
    "bad_box": "box dropped",
    "box_out_of_bounds": "box clipped",
    "degenerate_box": "box dropped",
    "span_outside_caption": "box dropped",
    "bad_label_line": "line skipped",
}


@dataclass
class ProblemLog:
    """Counts every problem and keeps the first `keep_per_kind` messages of each kind."""

    keep_per_kind: int = 20
    counts: Counter = field(default_factory=Counter)
    examples: dict[str, list[str]] = field(default_factory=dict)

    def add(self, kind: str, file: str, reason: str) -> None:
        self.counts[kind] += 1
        kept = self.examples.setdefault(kind, [])
        if len(kept) < self.keep_per_kind:
            kept.append(f"{file}: {reason}")

    def extend(self, other: "ProblemLog") -> None:
        for kind, count in other.counts.items():
            self.counts[kind] += count
            kept = self.examples.setdefault(kind, [])
            kept.extend(other.examples.get(kind, [])[: max(0, self.keep_per_kind - len(kept))])

    def __len__(self) -> int:
        return sum(self.counts.values())

    def lines(self) -> list[str]:
        """One line per kept problem, then one line per kind whose messages were cut."""
        out = []
        for kind, kept in self.examples.items():
            out.extend(kept)
            hidden = self.counts[kind] - len(kept)
            if hidden > 0:
                out.append(f"... and {hidden} more {kind.replace('_', ' ')} problem(s)")
        return out

    def summary(self) -> str:
        if not self.counts:
            return "problems: none"
        parts = [f"{count} {kind.replace('_', ' ')} ({CONSEQUENCES.get(kind, 'reported')})"
                 for kind, count in sorted(self.counts.items())]
        return "problems: " + ", ".join(parts)
