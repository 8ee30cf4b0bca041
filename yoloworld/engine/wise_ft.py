"""WiSE-FT (Wortsman et al., "Robust fine-tuning of zero-shot models", CVPR 2022): after fine-tuning, mix the
weights, theta(alpha) = (1 - alpha) theta_start + alpha theta_finetuned, score every alpha of a grid on the fine-tuning
val set and on the retained vocabulary, and keep the alpha with the most retained AP among those whose target AP is at
least `min_target` x the fine-tuned model's. No training, no extra cost at inference.

    yoloworld wise-ft runs/train/exp                 (or keep.wise_ft=true in the recipe: done at the end of the run)
"""

from __future__ import annotations

import logging
from pathlib import Path

import torch

from yoloworld.errors import CheckpointError
from yoloworld.files import write_json
from yoloworld.models.checkpoint import load_detector, open_checkpoint, save_checkpoint
from yoloworld.models.text import TextEmbeddingCache
from yoloworld.models.weights import resolve_weights

logger = logging.getLogger(__name__)
ALPHAS = tuple(i / 10 for i in range(11))


def mixable(start: dict, tuned: dict) -> set[str]:
    """The floating tensors the two states share (same name and shape)."""
    return {key for key, value in tuned.items() if value.is_floating_point() and key in start
            and start[key].shape == value.shape}


def interpolate(start: dict, tuned: dict, alpha: float) -> tuple[dict, int]:
    """(1 - alpha) start + alpha tuned for every mixable tensor; the rest (integer buffers, layers the start lacks)
    stay fine-tuned. Returns the state and how many tensors were mixed."""
    keys = mixable(start, tuned)
    mixed = {key: torch.lerp(start[key].to(value.dtype), value, alpha) if key in keys else value
             for key, value in tuned.items()}
    return mixed, len(keys)


def choose(rows: list[dict], min_target: float) -> dict:
    """The row with the most retained AP whose target AP >= min_target x alpha 1's (ties: the larger alpha)."""
    reference = max(rows, key=lambda row: row["alpha"])["target_AP"]
    eligible = [row for row in rows if row["target_AP"] >= min_target * reference]
    return max(eligible, key=lambda row: (row["retained_AP"], row["alpha"]))


def wise_ft(start: str | Path, tuned: str | Path, scoring, out: str | Path, device: torch.device,
            alphas=ALPHAS, min_target: float = 0.95) -> dict:
    """Score the grid with `scoring` (a RunScoring with a retained set), write the chosen mix to `out` (with the
    fine-tuned file's vocabulary and metadata) and `out`.json; returns the table and the choice."""
    model, data = load_detector(tuned)
    if model.text_model is None:
        raise CheckpointError(f"{tuned}: WiSE-FT scores vocabularies: the fine-tuned file must keep its text tower")
    finetuned = {k: v.clone() for k, v in model.state_dict().items()}
    starting = open_checkpoint(start).state
    shared = len(mixable(starting, finetuned))
    if not shared:
        raise CheckpointError(f"{start}: shares no weights with {tuned}; WiSE-FT needs the model fine-tuning started "
                              "from")
    model.to(device)
    encode = TextEmbeddingCache(model.text_model).encode
    rows = []
    for alpha in sorted({*alphas, 1.0}):
        model.load_state_dict(interpolate(starting, finetuned, alpha)[0])
        target = scoring.val(model, device, False, encode)
        retained = scoring.retain(model, device, False, encode)
        rows.append({"alpha": alpha, "target_AP": target["AP"], "target_AP50": target["AP50"],
                     "retained_AP": retained["AP"], "retained_AP50": retained["AP50"]})
        logger.info("WiSE-FT alpha %.2f: target AP %.4f  retained AP %.4f", alpha, target["AP"], retained["AP"])
    chosen = choose(rows, min_target)
    model.load_state_dict(interpolate(starting, finetuned, chosen["alpha"])[0])
    meta = {k: v for k, v in data["meta"].get("yoloworld", {}).items() if k not in ("model", "text_config")}
    meta["wise_ft"] = {"alpha": chosen["alpha"], "start": str(start), "finetuned": str(tuned)}
    entries = {k: v for k, v in data.items() if k not in ("meta", "state_dict")}
    save_checkpoint(out, model.cpu(), meta, **entries)
    result = {"chosen": chosen, "min_target": min_target, "tensors_mixed": shared, "weights": str(out), "grid": rows}
    write_json(Path(out).with_suffix(".json"), result, indent=2)
    logger.info("WiSE-FT: alpha %.2f keeps target AP %.4f (alpha 1: %.4f) with retained AP %.4f (alpha 0: %.4f): %s",
                chosen["alpha"], chosen["target_AP"], rows[-1]["target_AP"], chosen["retained_AP"],
                rows[0]["retained_AP"], out)
    return result


def run_wise_ft(out: Path, config, scoring, device: torch.device) -> dict:
    """keep.wise_ft at the end of a run: best.pth (else last.pth) mixed with model.weights -> wise_ft.pth."""
    return wise_ft(config.model.weights, resolve_weights(out), scoring, out / "wise_ft.pth", device,
                   min_target=config.keep.wise_min_target)


__all__ = ["ALPHAS", "mixable", "interpolate", "choose", "wise_ft", "run_wise_ft"]
