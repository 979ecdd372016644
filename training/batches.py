"""Cohort arrays -> model input tensors, with exactly the conventions of the agent's engine inputs.

``models.forecaster.EngineForecaster.inputs`` is the contract: MAP set to 0 where a cell is gated
or missing with ``map_valid`` 0, waveform 0 where NaN with ``wave_valid`` 0, numerics 0 where
absent with ``numerics_mask`` 0, and the MiniLM token embeddings of the patient's clinical
description (``models.text``) with their mask. Text embeddings are computed once per case.

The belief decoder is trained on the event stream the MAP grid gives: one ``numerics`` event per
minute over the last ``belief_minutes`` (median MAP, SBP, DBP and HR of that minute's valid
cells; a minute without valid cells carries no pressure features), scaled as
``models.events.tokenize`` scales monitor observations.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass

import numpy as np
import torch

from training.cohort import Split


@dataclass
class TextTable:
    """Per-case text embeddings: ``index[caseid]`` -> row of ``emb`` (C, T, D) and ``mask`` (C, T)."""

    index: dict[int, int]
    emb: torch.Tensor
    mask: torch.Tensor


def build_text_table(cases: list[dict], text_tokens: int, text_dim: int, encoder=None) -> TextTable:
    """Encode each case's clinical description (no context -> an all-zero mask: the missing token)."""
    from streams.replay import context_from_clinical

    if encoder is None:
        from models.text import TextEncoder

        encoder = TextEncoder(text_tokens=text_tokens)
    index, embs, masks = {}, [], []
    for i, c in enumerate(cases):
        row = c.get("clinical") or {}
        ctx = context_from_clinical(row, "train", 0) if row else None
        if ctx is not None:
            e, m = encoder.encode(ctx)
        else:
            e, m = np.zeros((text_tokens, text_dim), np.float32), np.zeros(text_tokens, np.float32)
        index[int(c["caseid"])] = i
        embs.append(np.asarray(e, np.float32))
        masks.append(np.asarray(m, np.float32))
    return TextTable(index, torch.from_numpy(np.stack(embs)), torch.from_numpy(np.stack(masks)))


def forecaster_inputs(split: Split, idx: np.ndarray, text: TextTable) -> dict[str, torch.Tensor]:
    """Engine inputs for samples ``idx`` of ``split`` (B = len(idx))."""
    idx = np.asarray(idx)
    m = np.asarray(split["map_mmhg"][idx], np.float32)                    # (B, n_cells)
    ok = np.asarray(split["valid"][idx]) & np.isfinite(m)
    w = np.asarray(split["wave_mmhg"][idx], np.float32)                   # (B, n_wave)
    wok = np.isfinite(w)
    nu = np.asarray(split["numerics"][idx], np.float32)                   # (B, F)
    nok = np.isfinite(nu)
    rows = torch.as_tensor([text.index[int(c)] for c in split["caseid"][idx]], dtype=torch.long)
    return {
        "map_mmhg": torch.from_numpy(np.where(ok, m, 0.0).astype(np.float32)),
        "map_valid": torch.from_numpy(ok.astype(np.float32)),
        "wave_mmhg": torch.from_numpy(np.where(wok, w, 0.0).astype(np.float32)),
        "wave_valid": torch.from_numpy(wok.astype(np.float32)),
        "numerics": torch.from_numpy(np.where(nok, nu, 0.0).astype(np.float32)),
        "numerics_mask": torch.from_numpy(nok.astype(np.float32)),
        "text_emb": text.emb[rows],
        "text_mask": text.mask[rows],
    }


def targets(split: Split, idx: np.ndarray) -> dict[str, torch.Tensor]:
    idx = np.asarray(idx)
    lab = np.asarray(split["labels"][idx])
    fut = np.asarray(split["future_map_mmhg"][idx], np.float32)
    fok = np.isfinite(fut)
    return {
        "labels": torch.from_numpy(np.where(lab >= 0, lab, 0).astype(np.float32)),     # (B, H)
        "label_mask": torch.from_numpy((lab >= 0).astype(np.float32)),                # (B, H)
        "future_map": torch.from_numpy(np.where(fok, fut, 0.0).astype(np.float32)),   # (B, n_future)
        "future_valid": torch.from_numpy(fok.astype(np.float32)),
    }


def belief_events(split: Split, idx: np.ndarray, grid_s: float, belief_minutes: int = 15
                  ) -> dict[str, torch.Tensor]:
    """Decoder inputs: one numerics event per minute, oldest first. -> (B, S) / (B, S, F)."""
    from models.events import EVENT_FEATURES, EVENT_KINDS, _scale, name_id

    idx = np.asarray(idx)
    per_min = int(round(60.0 / grid_s))
    n = belief_minutes * per_min
    valid = np.asarray(split["valid"][idx])[:, -n:]
    cols = {"map_mmhg": split["map_mmhg"], "sbp_mmhg": split["sbp_mmhg"], "dbp_mmhg": split["dbp_mmhg"],
            "hr_bpm": split["hr_bpm"]}
    B, S, F = idx.size, belief_minutes, len(EVENT_FEATURES)
    values = np.zeros((B, S, F), np.float32)
    mask = np.zeros((B, S, F), np.float32)
    values[:, 1:, 0] = math.log1p(60.0) / 5.0                              # dt to the previous event
    mask[:, 1:, 0] = 1.0
    for slot, arr in cols.items():
        x = np.where(valid, np.asarray(arr[idx], np.float32)[:, -n:], np.nan).reshape(B, S, per_min)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            med = np.nanmedian(x, axis=2)                                  # (B, S)
        ok = np.isfinite(med)
        j = EVENT_FEATURES.index(slot)
        values[:, :, j] = np.where(ok, _scale(slot, 0.0) + np.nan_to_num(med) / _scale_unit(slot), 0.0)
        mask[:, :, j] = ok
    kind = np.full((B, S), EVENT_KINDS.index("numerics"), np.int64)
    name = np.full((B, S), name_id(None), np.int64)
    return {"event_kind": torch.from_numpy(kind), "event_name": torch.from_numpy(name),
            "event_values": torch.from_numpy(values), "event_mask": torch.from_numpy(mask)}


def _scale_unit(slot: str) -> float:
    """The divisor of ``models.events._scale`` for a pressure/rate slot (it is affine in v)."""
    from models.events import _scale

    return 1.0 / (_scale(slot, 1.0) - _scale(slot, 0.0))
