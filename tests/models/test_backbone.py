"""GPT-2 blocks: weights copied from a local Hugging Face GPT-2 directory reproduce its outputs."""

from __future__ import annotations

import pytest
import torch

from models.backbone import GPTBackbone, load_gpt2_weights
from models.configs import get_config
from models.fusion_lm import FusionLM


@pytest.fixture(scope="module")
def gpt2_dir(tmp_path_factory):
    """A tiny random GPT-2 (3 blocks, 64 wide) saved in HF format; made here, nothing downloaded."""
    from transformers import GPT2Config, GPT2Model
    torch.manual_seed(0)
    cfg = GPT2Config(n_layer=3, n_embd=64, n_head=2, n_positions=64, vocab_size=50,
                     resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0)
    model = GPT2Model(cfg).eval()
    d = tmp_path_factory.mktemp("gpt2")
    model.save_pretrained(d)                        # model.safetensors + config.json
    return d, model


def test_first_blocks_reproduce_hf_gpt2(gpt2_dir):
    path, hf = gpt2_dir
    hf3 = hf
    ours = GPTBackbone(n_layer=3, n_embd=64, n_head=2).eval()
    extra = load_gpt2_weights(ours, path)
    x = torch.randn(2, 10, 64)
    with torch.no_grad():
        want = hf3(inputs_embeds=x).last_hidden_state            # adds wpe[:10], runs 3 blocks, ln_f
        got, _ = ours(x + extra["wpe.weight"][:10])
    assert float((got - want).abs().max()) < 1e-5


def test_fewer_blocks_and_shape_errors(gpt2_dir):
    path, _ = gpt2_dir
    two = GPTBackbone(n_layer=2, n_embd=64, n_head=2)
    load_gpt2_weights(two, path)                                  # first 2 of 3 blocks
    with pytest.raises(ValueError, match="checkpoint has 3 blocks, backbone needs 4"):
        load_gpt2_weights(GPTBackbone(n_layer=4, n_embd=64, n_head=2), path)
    with pytest.raises(ValueError, match="n_embd 64 != backbone n_embd 32"):
        load_gpt2_weights(GPTBackbone(n_layer=2, n_embd=32, n_head=2), path)


def test_fusion_lm_loads_gpt2(gpt2_dir):
    path, hf = gpt2_dir
    lm = FusionLM(get_config("tiny"))
    lm.load_gpt2(path)
    assert torch.equal(lm.backbone.h[0].attn.c_attn.weight, hf.h[0].attn.c_attn.weight.t())
    assert torch.equal(lm.wpe, hf.wpe.weight[:30])


def test_kv_cache_matches_full_causal_pass():
    torch.manual_seed(0)
    bb = GPTBackbone(n_layer=2, n_embd=32, n_head=4).eval()
    x = torch.randn(3, 7, 32)
    with torch.no_grad():
        full, _ = bb(x)
        a, past = bb(x[:, :4], torch.zeros(2, 2, 3, 4, 0, 8))
        b, _ = bb(x[:, 4:], past)
    assert float((torch.cat([a, b], 1) - full).abs().max()) < 1e-5
