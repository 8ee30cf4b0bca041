"""Counting tracked objects per class: crossings of a line (in / out) and occupancy of a polygon zone, with
supervision's `LineZone` and `PolygonZone` (an object counts by the centre of its box).

Counts are kept by class *name*, not index, so they survive a vocabulary change; a line counts each track once per
crossing (supervision follows it by `track_id`).
"""

from __future__ import annotations

from collections import Counter

import numpy as np

from yoloworld.results import Results


class Counters:
    """`line`: (x1, y1, x2, y2); `zone`: [(x, y), ...] (three points or more), in frame pixels."""

    def __init__(self, line: tuple[float, ...] | None = None, zone: list[tuple[float, float]] | None = None):
        import supervision as sv

        anchor = (sv.Position.CENTER,)
        self.line = None if line is None else sv.LineZone(sv.Point(*line[:2]), sv.Point(*line[2:]), anchor)
        self.zone = None if zone is None else sv.PolygonZone(np.round(np.array(zone)).astype(np.int64), anchor)
        self.crossed_in, self.crossed_out = Counter(), Counter()
        self.in_zone, self.zone_tracks, self.zone_peak = Counter(), {}, Counter()

    def __bool__(self) -> bool:
        return self.line is not None or self.zone is not None

    def update(self, result: Results) -> dict:
        """Count the tracked detections of the next frame; returns the record's `counts`: crossings so far per
        class (`line_in`, `line_out`) and the objects in the zone now (`zone`)."""
        detections, names, counts = result.to_supervision(), np.array(result.class_names, dtype=object), {}
        if self.line is not None:
            crossed_in, crossed_out = self.line.trigger(detections) if len(detections) else ([], [])
            self.crossed_in.update(names[np.asarray(crossed_in, dtype=bool)].tolist())
            self.crossed_out.update(names[np.asarray(crossed_out, dtype=bool)].tolist())
            counts.update(line_in=dict(self.crossed_in), line_out=dict(self.crossed_out))
        if self.zone is not None:
            inside = self.zone.trigger(detections) if len(detections) else np.zeros(0, dtype=bool)
            self.in_zone = Counter(names[inside].tolist())
            for name, track_id in zip(names[inside], result.track_ids[inside]):
                self.zone_tracks.setdefault(name, set()).add(int(track_id))
            self.zone_peak |= self.in_zone  # the largest count of each class seen at once
            counts["zone"] = dict(self.in_zone)
        return counts

    def draw(self, canvas: np.ndarray) -> np.ndarray:
        import supervision as sv

        if self.line is not None:
            canvas = sv.LineZoneAnnotator(thickness=2, text_scale=0.4, text_padding=4).annotate(canvas, self.line)
        if self.zone is not None:
            label = ", ".join(f"{n} {name}" for name, n in self.in_zone.items()) or "empty"
            canvas = sv.PolygonZoneAnnotator(self.zone, thickness=2, text_scale=0.4, display_in_zone_count=False
                                             ).annotate(canvas, label)
        return canvas

    def summary(self) -> list[str]:
        """'line: 12 person crossed in, 9 out', 'zone: 4 car entered, at most 2 at once', one line per class."""
        lines = [f"line: {self.crossed_in[name]} {name} crossed in, {self.crossed_out[name]} out"
                 for name in sorted(set(self.crossed_in) | set(self.crossed_out))]
        if self.line is not None and not lines:
            lines.append("line: nothing crossed")
        lines += [f"zone: {len(ids)} {name} entered, at most {self.zone_peak[name]} at once"
                  for name, ids in sorted(self.zone_tracks.items())]
        if self.zone is not None and not self.zone_tracks:
            lines.append("zone: nothing entered")
        return lines


__all__ = ["Counters"]
