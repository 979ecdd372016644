"""Training hands weights over with save_checkpoint; export carries them, calibration and provenance."""

from __future__ import annotations

import numpy as np
import torch

from models.belief_decoder import apply_lora
from models.configs import get_config
from models.export import export_engines, save_checkpoint
from models.runtime import load_engine
from models.zoo import MODELS, build_model


def test_checkpoint_round_trip(tmp_path):
    cfg = get_config("tiny")
    torch.manual_seed(5)
    models = {n: build_model(n, cfg).eval() for n in MODELS}
    lora = apply_lora(models["belief_decoder"])
    with torch.no_grad():
        for n, p in lora.named_parameters():
            if "lora_B" in n:
                p.normal_(0, 0.1)
    models["belief_decoder"] = lora
    cal = {"gated_fusion": {"platt_a": [0.9, 1.0, 1.1], "platt_b": [-0.2, 0.0, 0.1], "fitted": True}}
    run_dir = tmp_path / "run"
    save_checkpoint(run_dir / "checkpoint.pt", cfg, models, calibration=cal,
                    training_data_hash="sha256:abc", version="2026.11.23")
    out = tmp_path / "eng"
    m = export_engines(out, get_config("base"), checkpoint=run_dir, fp16=False)  # config comes from the checkpoint
    assert m.trained and m.version == "2026.11.23" and m.training_data_hash == "sha256:abc"
    assert m.config["name"] == "tiny"
    assert m.models["gated_fusion"].calibration.platt_b == [-0.2, 0.0, 0.1]
    assert m.models["gated_fusion"].calibration.fitted
    for name in MODELS:
        x = {k: v.numpy() for k, v in MODELS[name].example_inputs(cfg, 3).items()}
        src = models[name]
        with torch.no_grad():
            want = src(*[torch.from_numpy(x[k]) for k in MODELS[name].input_names])[0].numpy()
        got = load_engine(out, "onnxruntime", model=name).run(x)[MODELS[name].output_names[0]]
        assert float(np.abs(got - want).max()) <= 1e-4, name
