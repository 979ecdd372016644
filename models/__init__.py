"""Model definitions (PyTorch), their export to ONNX, and the engine runtime the agent uses.

    configs.py         model sizes (tiny/base/paper) and signal geometry
    text.py            deterministic clinical description + offline MiniLM token embeddings
    backbone.py        GPT-2-style blocks (KV cache), cross-attention, local GPT-2 weight loading
    fusion_lm.py       IOHFuseLM-style forecaster: MAP patches + text tokens attending to them
    gated_fusion.py    gated multimodal fusion: trend, morphology, numerics, context
    events.py          clinical events -> belief-decoder tokens
    belief_decoder.py  causal event decoder with [PREDICT] tokens, KV cache, LoRA
    zoo.py             the models by name
    export.py          ONNX FP32/FP16 + checkpoints + manifest; training checkpoints
    manifest.py        the manifest and its check against Settings
    runtime.py         load_engine: backends by name (backends/: tensorrt, ort, torch_eager)
    forecaster.py      EngineForecaster (the agent's Forecaster protocol) and load_forecaster
    bench.py           latency/throughput per backend and batch size

Nothing here imports TensorRT, CUDA or onnxruntime at import time.
"""
