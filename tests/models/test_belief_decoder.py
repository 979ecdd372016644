"""Belief decoder: KV-cache steps equal the full sequence; LoRA merge keeps outputs; the tracker.

Tolerance: incremental vs full-sequence belief logits max abs diff <= 1e-5 (same FP32 arithmetic,
different matmul shapes); ONNX Runtime steps vs eager full sequence <= 1e-4.
"""

from __future__ import annotations

import pytest
import torch

from agent.beliefs import BeliefTracker
from agent.settings import Settings
from models.belief_decoder import BeliefDecoder, apply_lora, merge_lora
from models.configs import get_config
from models.runtime import load_engine
from streams.contracts import ClinicalEvent, Forecast, Observation

S_EVENTS = 9


@pytest.fixture(scope="module")
def decoder():
    torch.manual_seed(1)
    return BeliefDecoder(get_config("tiny")).eval()


def _events(cfg, n, seed=3):
    x = BeliefDecoder.example_inputs(cfg, batch=2, seed=seed, n_events=n, past_len=0)
    return {k: v for k, v in x.items() if k != "past_kv"}


def _slice(ev, a, b):
    return {k: v[:, a:b] for k, v in ev.items()}


def test_incremental_equals_full_from_empty_cache(decoder):
    cfg = decoder.cfg
    ev = _events(cfg, S_EVENTS)
    with torch.no_grad():
        full, full_kv = decoder(**ev, past_kv=decoder.empty_past(2))             # (2, S, H)
        past = decoder.empty_past(2)
        steps = []
        for i in range(S_EVENTS):
            logits, past = decoder(**_slice(ev, i, i + 1), past_kv=past)
            steps.append(logits)
    inc = torch.cat(steps, dim=1)
    assert inc.shape == full.shape == (2, S_EVENTS, cfg.n_horizons)
    assert float((inc - full).abs().max()) <= 1e-5
    assert past.shape == full_kv.shape == (cfg.dec_layer, 2, 2, cfg.dec_head, 2 * S_EVENTS, cfg.dec_embd // cfg.dec_head)
    assert float((past - full_kv).abs().max()) <= 1e-5


def test_incremental_equals_full_after_prefill(decoder):
    ev = _events(decoder.cfg, S_EVENTS, seed=4)
    with torch.no_grad():
        full, _ = decoder(**ev, past_kv=decoder.empty_past(2))
        pre, past = decoder(**_slice(ev, 0, 5), past_kv=decoder.empty_past(2))   # prefill 5 events
        steps = [pre]
        for i in range(5, S_EVENTS):
            logits, past = decoder(**_slice(ev, i, i + 1), past_kv=past)
            steps.append(logits)
        # a multi-event chunk after a prefill is the same too
        chunk, _ = decoder(**_slice(ev, 5, S_EVENTS), past_kv=decoder(**_slice(ev, 0, 5), past_kv=decoder.empty_past(2))[1])
    assert float((torch.cat(steps, 1) - full).abs().max()) <= 1e-5
    assert float((chunk - full[:, 5:]).abs().max()) <= 1e-5


def test_earlier_beliefs_do_not_see_later_events(decoder):
    ev = _events(decoder.cfg, 6)
    changed = {k: v.clone() for k, v in ev.items()}
    changed["event_values"][:, 4:] += 3.0
    with torch.no_grad():
        a, _ = decoder(**ev, past_kv=decoder.empty_past(2))
        b, _ = decoder(**changed, past_kv=decoder.empty_past(2))
    assert torch.allclose(a[:, :4], b[:, :4], atol=1e-6)
    assert not torch.allclose(a[:, 4:], b[:, 4:], atol=1e-3)


def test_missing_feature_is_not_a_zero_value(decoder):
    ev = _events(decoder.cfg, 3)
    zero_present = {k: v.clone() for k, v in ev.items()}
    zero_present["event_values"][:, :, 2] = 0.0
    zero_present["event_mask"][:, :, 2] = 1.0
    absent = {k: v.clone() for k, v in zero_present.items()}
    absent["event_mask"][:, :, 2] = 0.0
    with torch.no_grad():
        a, _ = decoder(**zero_present, past_kv=decoder.empty_past(2))
        b, _ = decoder(**absent, past_kv=decoder.empty_past(2))
    assert not torch.allclose(a, b, atol=1e-4)


def test_lora_merge_gives_same_outputs():
    torch.manual_seed(2)
    cfg = get_config("tiny")
    base = BeliefDecoder(cfg).eval()
    peft_model = apply_lora(base)
    lora_params = [n for n, _ in peft_model.named_parameters() if "lora_" in n]
    assert any("attn.c_attn" in n for n in lora_params) and any("attn.c_proj" in n for n in lora_params)
    assert not any("mlp" in n for n in lora_params)
    trainable = [n for n, p in peft_model.named_parameters() if p.requires_grad]
    assert trainable and all("lora_" in n for n in trainable)
    with torch.no_grad():   # LoRA B starts at zero; make the adapters matter so the test can fail
        for n, p in peft_model.named_parameters():
            if "lora_B" in n:
                p.normal_(0.0, 0.2)
    ev = _events(cfg, 5)
    with torch.no_grad():
        unmerged, _ = peft_model(**ev, past_kv=base.empty_past(2))
        merged_model = merge_lora(peft_model)
        merged, _ = merged_model(**ev, past_kv=merged_model.empty_past(2))
        plain = BeliefDecoder(cfg).eval()
        plain.load_state_dict(merged_model.state_dict())
        reloaded, _ = plain(**ev, past_kv=plain.empty_past(2))
    assert isinstance(merged_model, BeliefDecoder)
    assert float((merged - unmerged).abs().max()) <= 1e-5
    assert float((reloaded - unmerged).abs().max()) <= 1e-5


def _bed_events(n: int) -> list:
    out = []
    for i in range(n):
        t = (i + 1) * 30 * 10**9
        if i % 4 == 0:
            out.append(ClinicalEvent(bed_id="OR-1", t_ns=t, kind="drug", name="phenylephrine", value=100.0, unit="ug"))
        elif i % 4 == 1:
            out.append([Observation(bed_id="OR-1", t_ns=t, code="150039", label="MDC_PRESS_BLD_ART_ABP_MEAN",
                                    value=70.0 - i, unit="mm[Hg]"),
                        Observation(bed_id="OR-1", t_ns=t, code="147842", label="MDC_ECG_HEART_RATE",
                                    value=80.0, unit="/min")])
        elif i % 4 == 2:
            out.append(Forecast(bed_id="OR-1", t_ns=t, risk={"5": 0.2, "10": 0.4, "15": 0.5}, map_now_mmhg=68.0,
                                signal_quality="ok", valid_fraction=1.0, model="m", model_version="1", backend="x"))
        else:
            out.append(ClinicalEvent(bed_id="OR-1", t_ns=t, kind="phase", name="incision"))
    return out


@pytest.mark.parametrize("runner", ["torch", "onnxruntime"])
def test_tracker_steps_equal_rebuild(runner, tiny_engine_dir):
    if runner == "torch":
        m = BeliefDecoder(get_config("tiny"))
        m.load_state_dict(torch.load(tiny_engine_dir / "belief_decoder.pt", weights_only=True)["state_dict"])
        target = m.eval()
    else:
        target = load_engine(tiny_engine_dir, "onnxruntime", model="belief_decoder")
    tracker = BeliefTracker(target, Settings(), max_beds=4)
    events = _bed_events(12)
    steps = [tracker.update("OR-1", e) for e in events]
    assert tracker.cache_tokens("OR-1") == 24
    rebuilt = BeliefTracker(target, Settings(), max_beds=4).rebuild("OR-1", events)
    assert steps[-1].event_kind == rebuilt.event_kind == "phase"
    assert steps[-1].t_ns == events[-1].t_ns
    for h in ("5", "10", "15"):
        assert 0.0 < steps[-1].belief[h] < 1.0
        assert abs(steps[-1].belief[h] - rebuilt.belief[h]) <= 1e-5
    assert [s.event_kind for s in steps[:4]] == ["drug", "numerics", "forecast", "phase"]


def test_tracker_is_bounded(tiny_engine_dir):
    cfg = get_config("tiny")
    eng = load_engine(tiny_engine_dir, "onnxruntime", model="belief_decoder")
    tracker = BeliefTracker(eng, Settings(), max_beds=2)
    events = _bed_events(cfg.dec_max_tokens // 2 + 5)     # more events than the cache holds
    for e in events:
        tracker.update("OR-1", e)
        assert tracker.cache_tokens("OR-1") <= cfg.dec_max_tokens
    assert tracker.reprimes >= 1
    for bed in ("OR-2", "OR-3"):
        tracker.update(bed, events[0])
    assert len(tracker) == 2 and tracker.evictions == 1 and tracker.cache_tokens("OR-1") == 0
    L, nh, hs = cfg.dec_layer, cfg.dec_head, cfg.dec_embd // cfg.dec_head
    assert tracker.memory_bytes() <= 2 * L * 2 * nh * cfg.dec_max_tokens * hs * 4
