"""Shared test helpers: comparing detections as sets, comparing tensors at the kernel noise floor.

Two different computations of the same model (ONNX Runtime vs PyTorch, batch vs single image, channels_last vs
NCHW, fused vs unfused, a saved vs the live model) agree up to float rounding, and rounding differs between CPUs,
thread counts and memory layouts. Near-tied scores can then swap places, so detections are compared as sets:
matched one to one by class, box and score within stated tolerances.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
from scipy.optimize import linear_sum_assignment

REPO = Path(__file__).resolve().parents[1]


def cli_env() -> dict:
    """The environment of a `yoloworld` subprocess: offline, one thread, this checkout, not part of a DDP run."""
    env = dict(os.environ, HF_HUB_OFFLINE="1", OMP_NUM_THREADS="1", PYTHONPATH=str(REPO))
    env.pop("RANK", None)
    env.pop("WORLD_SIZE", None)
    return env


def run_cli(*args, cwd=None, timeout: float = 300) -> subprocess.CompletedProcess:
    """`python -m yoloworld ARGS` in a fresh process, as a user runs it."""
    return subprocess.run([sys.executable, "-m", "yoloworld", *map(str, args)], capture_output=True, text=True,
                          env=cli_env(), timeout=timeout, cwd=cwd or REPO)


def stop_process(process: subprocess.Popen, signum: int, timeout: float = 60) -> None:
    """Send `signum` (e.g. SIGINT: Ctrl-C) and wait; a process still running after `timeout` is killed."""
    process.send_signal(signum)
    try:
        process.wait(timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


def close(ours, reference, tol: float = 1e-4) -> float:
    """Max abs difference within `tol` x max(1, max|reference|); returns the difference.

    The official model's own noise floor (the same model with another conv kernel) reaches 1.9e-4 on neck
    features of magnitude ~20 and 1.2e-4 on box distances in [0, 15]: a bound relative to the tensor's scale keeps
    the check at that floor instead of below it.
    """
    ours, reference = _numpy(ours), _numpy(reference)
    diff = float(np.abs(ours - reference).max())
    assert diff <= tol * max(1.0, float(np.abs(reference).max())), diff
    return diff


def _numpy(value) -> np.ndarray:
    if hasattr(value, "detach"):
        return value.detach().float().cpu().numpy()
    return np.asarray(value)


def match_detections(ours, reference, box_tol: float, score_tol: float):
    """One-to-one matching of two detection sets: pairs of the same class whose boxes (max coordinate difference)
    and scores lie within the tolerances. Returns (pairs, unmatched indices in ours, unmatched in reference)."""
    box_diff = np.abs(ours.xyxy[:, None].astype(np.float64) - reference.xyxy[None]).max(-1, initial=0.0)
    score_diff = np.abs(ours.scores[:, None].astype(np.float64) - reference.scores[None])
    compatible = ((ours.class_ids[:, None] == reference.class_ids[None])
                  & (box_diff <= box_tol) & (score_diff <= score_tol))
    # the cheapest compatible pairing; incompatible pairs cost more than any full set of compatible ones
    cost = np.where(compatible, box_diff / box_tol + score_diff / score_tol, 1e9)
    rows, cols = linear_sum_assignment(cost) if cost.size else (np.zeros(0, int), np.zeros(0, int))
    pairs = [(int(r), int(c)) for r, c in zip(rows, cols) if compatible[r, c]]
    unmatched_ours = sorted(set(range(len(ours))) - {r for r, _ in pairs})
    unmatched_reference = sorted(set(range(len(reference))) - {c for _, c in pairs})
    return pairs, unmatched_ours, unmatched_reference


def assert_same_detections(ours, reference, box_tol: float = 5e-3, score_tol: float = 1e-4,
                           conf: float | None = None, max_det: int | None = None) -> None:
    """Two `Results` hold the same detections as sets.

    A detection may be missing from one side only where a cut-off decides it within float noise: its score within
    `score_tol` of `conf`, or of the lowest kept score when the other side stopped at `max_det`.
    """
    assert ours.names == reference.names, (ours.names, reference.names)
    assert tuple(ours.orig_shape) == tuple(reference.orig_shape)
    _, missing_in_reference, missing_in_ours = match_detections(ours, reference, box_tol, score_tol)
    for side, indices, other in ((ours, missing_in_reference, reference), (reference, missing_in_ours, ours)):
        for i in indices:
            score = float(side.scores[i])
            at_conf = conf is not None and abs(score - conf) <= score_tol
            at_max_det = (max_det is not None and len(other) >= max_det
                          and score <= float(other.scores.min()) + score_tol)
            assert at_conf or at_max_det, (
                f"unmatched detection: class {int(side.class_ids[i])}, score {score:.6f}, box "
                f"{np.round(side.xyxy[i], 2).tolist()} ({len(missing_in_reference)} of {len(ours)} unmatched in "
                f"ours, {len(missing_in_ours)} of {len(reference)} in the reference)")


def assert_same_result_lists(ours: list, reference: list, **tolerances) -> None:
    """Image by image `assert_same_detections`; each image must have detections, or the check proves nothing."""
    assert len(ours) == len(reference)
    for a, b in zip(ours, reference):
        assert len(b) > 0, "the reference has no detections: nothing would be compared"
        assert_same_detections(a, b, **tolerances)
