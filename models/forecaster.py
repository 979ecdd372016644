"""``EngineForecaster``: the agent's ``Forecaster`` protocol over an exported engine.

``predict`` turns a list of ``ForecastInput`` into the engine's batch arrays (MAP window and
validity, waveform and validity, numerics and presence mask, text token embeddings), runs the
engine once per batch (split only above ``max_batch``), and returns calibrated risks, the MAP
trajectory and the per-modality gates as ``drivers``.

``load_forecaster(settings)`` picks the engine (``settings.engine_path``; unset: the shipped
``models/default/`` when it exists; ``none``: the baseline), checks its manifest against the
settings and falls back to ``BaselineForecaster`` with ``fallback_reason`` set when anything
is missing or mismatched, so every forecast says why no model ran.
"""

from __future__ import annotations

import logging
import math
import time
from pathlib import Path
from typing import Sequence

import numpy as np

from agent.forecasting import BaselineForecaster, ForecastInput, ForecastOutput, map_level_and_slope
from models.configs import NUMERIC_LABELS

log = logging.getLogger("iohwatch.models.forecaster")

DEFAULT_ENGINE_DIR = Path(__file__).resolve().parent / "default"
# alternative spellings of numerics labels in ForecastInput.numerics
_NUMERIC_ALIASES = {"SPO2": ("SPO2", "SpO2", "PLETH_SPO2"), "HR": ("HR", "PLETH_HR"),
                    "NIBP_SBP": ("NIBP_SBP",), "NIBP_DBP": ("NIBP_DBP",), "NIBP_MBP": ("NIBP_MBP", "NIBP_MEAN"),
                    "RR": ("RR", "RR_CO2", "VENT_RR"), "ETCO2": ("ETCO2",), "BT": ("BT", "TEMP")}
NUMERIC_ALIASES = _NUMERIC_ALIASES   # public name (training builds the same vectors)


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-np.clip(x, -50.0, 50.0)))


def numerics_vector(numerics: dict[str, float]) -> tuple[np.ndarray, np.ndarray]:
    """-> values (F,) float32 and presence (F,) float32 in ``NUMERIC_LABELS`` order."""
    vals = np.zeros(len(NUMERIC_LABELS), np.float32)
    mask = np.zeros(len(NUMERIC_LABELS), np.float32)
    for i, label in enumerate(NUMERIC_LABELS):
        for key in _NUMERIC_ALIASES.get(label, (label,)):
            v = numerics.get(key)
            if v is not None and math.isfinite(v):
                vals[i], mask[i] = v, 1.0
                break
    return vals, mask


class EngineForecaster:
    def __init__(self, engine, text_encoder, settings, max_batch: int = 256):
        m = engine.manifest
        self.engine = engine
        self.text_encoder = text_encoder
        self.settings = settings
        self.max_batch = max_batch
        self.name = f"{m.name}-{engine.model}"
        self.version = m.version
        self.backend = engine.backend
        self.fallback_reason: str | None = None
        self.horizons_min = tuple(m.horizons_min)
        cal = m.models[engine.model].calibration
        n_h = len(self.horizons_min)
        self._platt_a = np.asarray(cal.platt_a if cal else [1.0] * n_h, np.float32)
        self._platt_b = np.asarray(cal.platt_b if cal else [0.0] * n_h, np.float32)
        self._needs = {s.name for s in engine.inputs}
        self.last_inference_ms: float | None = None
        self.alert_thresholds: dict[int, float] | None = None   # from alerting.json, if any

    def prepare_context(self, context) -> None:
        """Encode a patient's description now (tens to hundreds of ms on CPU, once per patient),
        so the forecast batch that first sees this patient finds it cached. Call it off the event
        loop when a ``PatientContext`` arrives; ``predict`` encodes on a cache miss regardless."""
        if self.text_encoder is not None and context is not None:
            self.text_encoder.encode(context)

    def inputs(self, batch: Sequence[ForecastInput]) -> dict[str, np.ndarray]:
        """The engine's input arrays for ``batch`` (B = len(batch))."""
        m = self.engine.manifest
        B = len(batch)
        arr = {
            "map_mmhg": np.zeros((B, m.n_cells), np.float32), "map_valid": np.zeros((B, m.n_cells), np.float32),
            "wave_mmhg": np.zeros((B, m.n_wave), np.float32), "wave_valid": np.zeros((B, m.n_wave), np.float32),
            "numerics": np.zeros((B, len(NUMERIC_LABELS)), np.float32),
            "numerics_mask": np.zeros((B, len(NUMERIC_LABELS)), np.float32),
        }
        text_tokens = m.text["tokens"]
        arr["text_emb"] = np.zeros((B, text_tokens, m.text["dim"]), np.float32)
        arr["text_mask"] = np.zeros((B, text_tokens), np.float32)
        for i, x in enumerate(batch):
            if abs(x.grid_s - m.grid_s) > 1e-9:
                raise ValueError(f"forecaster: bed {x.bed_id} grid {x.grid_s} s, engine expects {m.grid_s} s")
            if x.map_mmhg.shape != (m.n_cells,) or x.valid.shape != (m.n_cells,):
                raise ValueError(f"forecaster: bed {x.bed_id} MAP window has {x.map_mmhg.shape[0]} cells "
                                 f"(valid {x.valid.shape[0]}), engine expects {m.n_cells}")
            ok = x.valid.astype(bool) & np.isfinite(x.map_mmhg)
            arr["map_mmhg"][i] = np.where(ok, x.map_mmhg, 0.0)
            arr["map_valid"][i] = ok
            if "wave_mmhg" in self._needs:
                if x.wave_mmhg.shape != (m.n_wave,):
                    raise ValueError(f"forecaster: bed {x.bed_id} waveform has {x.wave_mmhg.shape[0]} samples, "
                                     f"engine expects {m.n_wave} ({m.wave_window_s} s at {m.wave_fs_hz} Hz)")
                wok = np.isfinite(x.wave_mmhg)
                arr["wave_mmhg"][i] = np.where(wok, x.wave_mmhg, 0.0)
                arr["wave_valid"][i] = wok
            arr["numerics"][i], arr["numerics_mask"][i] = numerics_vector(x.numerics)
            if self.text_encoder is not None and x.context is not None:
                arr["text_emb"][i], arr["text_mask"][i] = self.text_encoder.encode(x.context)
        return {k: v for k, v in arr.items() if k in self._needs}

    def predict(self, batch: Sequence[ForecastInput]) -> list[ForecastOutput]:
        out: list[ForecastOutput] = []
        t0 = time.perf_counter()
        for start in range(0, len(batch), self.max_batch):
            chunk = batch[start:start + self.max_batch]
            res = self.engine.run(self.inputs(chunk))
            risk = _sigmoid(self._platt_a * res["ioh_logits"] + self._platt_b)        # (B, H)
            traj = res.get("map_trajectory_mmhg")
            gates = res.get("gates")
            for i, x in enumerate(chunk):
                level, slope = map_level_and_slope(x.map_mmhg, x.valid.astype(bool), x.grid_s)
                drivers = {k: v for k, v in (("map_level_mmhg", level), ("map_trend_mmhg_per_min", slope))
                           if math.isfinite(v)}          # NaN does not survive JSON; absent means unknown
                if gates is not None:
                    drivers.update({mod: float(g) for mod, g in zip(self.engine.manifest.modalities, gates[i])})
                out.append(ForecastOutput(
                    risk={h: float(r) for h, r in zip(self.horizons_min, risk[i])},
                    map_trajectory_mmhg=None if traj is None else traj[i].astype(np.float32),
                    drivers=drivers))
        self.last_inference_ms = (time.perf_counter() - t0) * 1e3
        return out


def _baseline(settings, reason: str) -> BaselineForecaster:
    log.warning("forecaster: using the baseline: %s", reason)
    return BaselineForecaster(horizons_min=tuple(settings.horizons_min),
                              threshold_mmhg=settings.ioh_map_mmhg, fallback_reason=reason)


def resolve_engine_dir(settings) -> Path | None:
    """The engine directory the settings select; None means the baseline."""
    path = settings.engine_path
    if path is not None and str(path).strip().lower() == "none":
        return None
    if path is None or str(path).strip() in ("", "."):     # IOHWATCH_ENGINE_PATH= (empty) parses as "."
        return DEFAULT_ENGINE_DIR
    return Path(path)


def load_forecaster(settings, text_encoder=None):
    """Engine forecaster from the settings, or the baseline with ``fallback_reason`` saying why."""
    from models.manifest import EngineMismatch, check_compatible, load_manifest
    from models.runtime import load_engine

    path = resolve_engine_dir(settings)
    if path is None:
        return _baseline(settings, "no engine configured (IOHWATCH_ENGINE_PATH=none)")
    if not (path / "manifest.json").exists():
        what = "shipped default engine" if path == DEFAULT_ENGINE_DIR else "engine"
        return _baseline(settings, f"{what} not found: no manifest.json in {path}")
    try:
        manifest = load_manifest(path)
        check_compatible(manifest, settings)
        engine = load_engine(path, backend=settings.engine_backend, threads=settings.inference_threads)
    except EngineMismatch as exc:
        return _baseline(settings, str(exc))
    except Exception as exc:   # unreadable manifest, missing file, backend failure: say which
        return _baseline(settings, f"engine {path} failed to load: {type(exc).__name__}: {exc}")
    if text_encoder is None:
        from models.text import TextEncoder
        try:
            text_encoder = TextEncoder(text_tokens=manifest.text["tokens"]).warm()
        except Exception as exc:   # the engine still runs, with its learned "missing text" token
            log.warning("forecaster: MiniLM text encoder unavailable, context not used: %s", exc)
            text_encoder = None
    log.info("forecaster: %s %s on %s (%s)", manifest.forecaster, manifest.version, engine.backend,
             ", ".join(engine.providers))
    fc = EngineForecaster(engine, text_encoder, settings, max_batch=max(settings.microbatch_max_size, 1))
    fc.alert_thresholds = load_alert_thresholds(path, fc.horizons_min)
    return fc


ALERTING_FILE = "alerting.json"


def load_alert_thresholds(engine_dir: Path, horizons_min) -> dict[int, float] | None:
    """Per-horizon alert raise levels chosen on a development split (``alerting.json`` beside the
    manifest, written by ``iohwatch evaluate``); None when the engine has none, in which case the
    alert settings apply unchanged. A file that does not cover every horizon is refused."""
    import json

    f = Path(engine_dir) / ALERTING_FILE
    if not f.exists():
        return None
    doc = json.loads(f.read_text())
    levels = {int(h): float(v) for h, v in doc["raise_risk"].items()}
    missing = set(horizons_min) - set(levels)
    if missing or not all(0.0 < v < 1.0 for v in levels.values()):
        raise ValueError(f"{f}: raise_risk must give a probability in (0, 1) for horizons "
                         f"{list(horizons_min)}, got {doc['raise_risk']}")
    log.info("alerts: raise levels per horizon from %s (%s): %s", f.name, doc.get("chosen_on", "?"), levels)
    return levels
