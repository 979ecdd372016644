"""Event tokenisation for the belief decoder."""

from __future__ import annotations

import numpy as np
import pytest

from models.events import EVENT_FEATURES, EVENT_KINDS, EVENT_NAMES, stack, tokenize
from streams.contracts import ClinicalEvent, Forecast, Observation

F = {n: i for i, n in enumerate(EVENT_FEATURES)}


def _obs(code, label, value, t=10**9):
    return Observation(bed_id="b", t_ns=t, code=code, label=label, value=value, unit="mm[Hg]")


def test_drug_event():
    tok = tokenize(ClinicalEvent(bed_id="b", t_ns=61 * 10**9, kind="drug", name="Phenylephrine", value=100.0),
                   prev_t_ns=10**9)
    assert tok.kind == "drug" and EVENT_KINDS[tok.kind_id] == "drug"
    assert EVENT_NAMES[tok.name_id] == "phenylephrine"
    assert tok.mask[F["dose"]] == 1 and tok.mask[F["dt_log_s"]] == 1
    assert tok.values[F["dt_log_s"]] == pytest.approx(np.log1p(60.0) / 5.0)
    assert tok.mask.sum() == 2                        # nothing else claimed present


def test_first_event_has_no_interval_and_unknown_names_are_other():
    tok = tokenize(ClinicalEvent(bed_id="b", t_ns=5, kind="phase", name="Sternotomy"), prev_t_ns=None)
    assert tok.mask.sum() == 0 and EVENT_NAMES[tok.name_id] == "other"


def test_observation_batches():
    num = tokenize([_obs("150039", "MDC_PRESS_BLD_ART_ABP_MEAN", 64.0),
                    _obs("147842", "MDC_ECG_HEART_RATE", 95.0),
                    _obs("999999", "SOMETHING_ELSE", 1.0)], prev_t_ns=None)
    assert num.kind == "numerics"
    assert num.values[F["map_mmhg"]] == pytest.approx((64 - 80) / 15)
    assert num.mask[F["hr_bpm"]] == 1 and num.mask[F["spo2_pct"]] == 0
    nibp = tokenize([_obs("150023", "MDC_PRESS_CUFF_MEAN", 70.0), _obs("150021", "MDC_PRESS_CUFF_SYS", 100.0)], None)
    assert nibp.kind == "nibp" and nibp.mask[F["sbp_mmhg"]] == 1
    single = tokenize(_obs("150039", "MDC_PRESS_BLD_ART_ABP_MEAN", 64.0), None)
    assert single.kind == "numerics"
    with pytest.raises(ValueError, match="empty observation batch"):
        tokenize([], None)


def test_forecast_summary_and_stack():
    f = Forecast(bed_id="b", t_ns=3, risk={"5": 0.1, "10": 0.5, "15": 0.9}, map_now_mmhg=70.0,
                 signal_quality="ok", valid_fraction=1.0, model="m", model_version="1", backend="x")
    tok = tokenize(f, prev_t_ns=1)
    assert tok.kind == "forecast"
    assert tok.values[F["risk_15"]] == pytest.approx(0.8) and tok.mask[F["map_mmhg"]] == 1
    arr = stack([tok, tok])
    assert arr["event_kind"].shape == (1, 2) and arr["event_kind"].dtype == np.int64
    assert arr["event_values"].shape == (1, 2, len(EVENT_FEATURES)) and arr["event_mask"].dtype == np.float32
