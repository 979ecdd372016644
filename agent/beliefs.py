"""Per-bed IOH beliefs from the belief decoder, one decoder step per clinical event.

``BeliefTracker`` keeps, for at most ``max_beds`` beds (least recently updated evicted first),
the decoder's KV cache and the bed's recent event tokens. ``update`` feeds one event (two
tokens: event + [PREDICT]) against the cache and returns a ``Belief``. When a bed's cache
reaches the decoder's capacity (``dec_max_tokens``) it is re-primed from the newest half of its
events in one prefill, so memory per bed stays bounded. ``rebuild`` replays a bed's events
(read back from the events topic after a restart) in one prefill.

The decoder is either an ``Engine`` (ONNX Runtime / TensorRT / torch backend) or a torch
``BeliefDecoder``; both are run through the same ``run(inputs) -> outputs`` call.
"""

from __future__ import annotations

import logging
from collections import OrderedDict, deque
from dataclasses import dataclass, field
from typing import Iterable

import numpy as np

from models.events import Event, EventToken, stack, tokenize
from streams.contracts import Belief

log = logging.getLogger("iohwatch.agent.beliefs")


class _TorchRunner:
    """Adapts a torch BeliefDecoder to the Engine ``run`` interface."""

    def __init__(self, module):
        import torch
        self.module = module.eval()
        self._torch = torch

    def run(self, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        torch = self._torch
        xs = [torch.from_numpy(np.ascontiguousarray(inputs[n])) for n in self.module.input_names]
        with torch.inference_mode():
            outs = self.module(*xs)
        return {n: o.float().numpy() for n, o in zip(self.module.output_names, outs)}


@dataclass
class _BedState:
    past_kv: np.ndarray                                # (L, 2, 1, nh, P, hs)
    last_t_ns: int | None = None
    tokens: deque = field(default_factory=deque)       # recent EventTokens (for re-priming)


class BeliefTracker:
    def __init__(self, engine_or_torch_model, settings, max_beds: int = 512):
        if hasattr(engine_or_torch_model, "manifest"):
            engine = engine_or_torch_model
            cfg = engine.manifest.model_config_obj()
            self.runner = engine
            self.version = engine.manifest.version
            self.backend = engine.backend
        else:
            module = engine_or_torch_model
            cfg = module.cfg
            self.runner = _TorchRunner(module)
            self.version = "eager"
            self.backend = "torch"
        self.name = "belief_decoder"
        self.settings = settings
        self.horizons_min = tuple(cfg.horizons_min)
        self.max_beds = max_beds
        self.max_tokens = cfg.dec_max_tokens
        self.keep_events = max(1, self.max_tokens // 4)        # events kept when re-priming
        self._kv_tail = (cfg.dec_layer, cfg.dec_head, cfg.dec_embd // cfg.dec_head)
        self._beds: OrderedDict[str, _BedState] = OrderedDict()
        self.evictions = 0
        self.reprimes = 0

    # ------------------------------------------------------------------ state
    def _empty(self) -> np.ndarray:
        L, nh, hs = self._kv_tail
        return np.zeros((L, 2, 1, nh, 0, hs), np.float32)

    def _state(self, bed_id: str) -> _BedState:
        st = self._beds.get(bed_id)
        if st is None:
            st = _BedState(past_kv=self._empty(), tokens=deque(maxlen=self.max_tokens // 2))
            self._beds[bed_id] = st
            while len(self._beds) > self.max_beds:
                evicted, _ = self._beds.popitem(last=False)
                self.evictions += 1
                log.info("beliefs: evicted bed %s (max_beds=%d)", evicted, self.max_beds)
        self._beds.move_to_end(bed_id)
        return st

    def __len__(self) -> int:
        return len(self._beds)

    def cache_tokens(self, bed_id: str) -> int:
        st = self._beds.get(bed_id)
        return 0 if st is None else int(st.past_kv.shape[4])

    def memory_bytes(self) -> int:
        """Bytes held by all beds' KV caches (bounded by max_beds x dec_max_tokens)."""
        return sum(st.past_kv.nbytes for st in self._beds.values())

    def forget(self, bed_id: str) -> None:
        self._beds.pop(bed_id, None)

    # ------------------------------------------------------------------ steps
    def _run(self, tokens: list[EventToken], past_kv: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        res = self.runner.run({**stack(tokens), "past_kv": past_kv})
        return res["belief_logits"][0], res["present_kv"]          # (S, H), (L, 2, 1, nh, P+2S, hs)

    def _belief(self, bed_id: str, tok: EventToken, logits: np.ndarray) -> Belief:
        p = 1.0 / (1.0 + np.exp(-np.clip(logits, -50.0, 50.0)))
        return Belief(bed_id=bed_id, t_ns=tok.t_ns, event_kind=tok.kind,
                      belief={str(h): float(v) for h, v in zip(self.horizons_min, p)},
                      model=self.name, model_version=self.version)

    def update(self, bed_id: str, event: Event) -> Belief:
        """One event -> one decoder step (2 tokens) against the bed's cache."""
        st = self._state(bed_id)
        tok = tokenize(event, st.last_t_ns)
        if st.past_kv.shape[4] + 2 > self.max_tokens:
            keep = list(st.tokens)[-self.keep_events:]
            _, st.past_kv = self._run(keep, self._empty())
            self.reprimes += 1
        logits, st.past_kv = self._run([tok], st.past_kv)
        st.tokens.append(tok)
        st.last_t_ns = tok.t_ns
        return self._belief(bed_id, tok, logits[-1])

    def rebuild(self, bed_id: str, events: Iterable[Event]) -> Belief | None:
        """Replay a bed's events in time order (one prefill); returns the belief after the last."""
        self.forget(bed_id)
        st = self._state(bed_id)
        toks: list[EventToken] = []
        for ev in events:
            tok = tokenize(ev, st.last_t_ns)
            st.last_t_ns = tok.t_ns
            toks.append(tok)
        if not toks:
            return None
        toks = toks[-(self.max_tokens // 2):]
        logits, st.past_kv = self._run(toks, self._empty())
        st.tokens.extend(toks)
        return self._belief(bed_id, toks[-1], logits[-1])


def load_belief_tracker(settings, max_beds: int = 512) -> BeliefTracker | None:
    """Tracker over the engine's belief decoder, or None (logged) when the engine has none."""
    from models.forecaster import resolve_engine_dir
    from models.runtime import load_engine
    path = resolve_engine_dir(settings)
    if path is None or not (path / "manifest.json").exists():
        log.warning("beliefs: no engine with a belief decoder (%s); beliefs disabled", path)
        return None
    try:
        engine = load_engine(path, backend=settings.engine_backend, model="belief_decoder")
    except Exception as exc:
        log.warning("beliefs: belief decoder failed to load from %s: %s; beliefs disabled", path, exc)
        return None
    return BeliefTracker(engine, settings, max_beds=max_beds)
