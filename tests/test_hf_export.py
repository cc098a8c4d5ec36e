"""LLM.hf_state_dict and LLM.hf_config against a Hugging Face Qwen2ForCausalLM layout written out
here by hand: every parameter name and shape that the config implies, nothing more."""

import torch

from vita_mini.config import LLMConfig
from vita_mini.model.llm import LLM

V = 50
CFG = LLMConfig(d_model=32, n_layers=3, n_heads=4, n_kv_heads=2, d_ff=48, rope_theta=5000.0,
                rms_eps=1e-5, max_seq_len=96)


def qwen2_parameter_shapes(config: dict) -> dict:
    """Parameter name -> shape of a Qwen2ForCausalLM with this config (untied head)."""
    V, C, F = config["vocab_size"], config["hidden_size"], config["intermediate_size"]
    H, Hkv = config["num_attention_heads"], config["num_key_value_heads"]
    D = C // H
    shapes = {"model.embed_tokens.weight": (V, C)}
    for i in range(config["num_hidden_layers"]):
        p = f"model.layers.{i}."
        shapes.update({
            p + "self_attn.q_proj.weight": (H * D, C), p + "self_attn.q_proj.bias": (H * D,),
            p + "self_attn.k_proj.weight": (Hkv * D, C), p + "self_attn.k_proj.bias": (Hkv * D,),
            p + "self_attn.v_proj.weight": (Hkv * D, C), p + "self_attn.v_proj.bias": (Hkv * D,),
            p + "self_attn.o_proj.weight": (C, H * D),
            p + "mlp.gate_proj.weight": (F, C),
            p + "mlp.up_proj.weight": (F, C),
            p + "mlp.down_proj.weight": (C, F),
            p + "input_layernorm.weight": (C,),
            p + "post_attention_layernorm.weight": (C,),
        })
    shapes["model.norm.weight"] = (C,)
    assert not config["tie_word_embeddings"]
    shapes["lm_head.weight"] = (V, C)
    return shapes


def test_hf_config_fields():
    config = LLM(CFG, V).hf_config()
    assert config["model_type"] == "qwen2"
    assert config["architectures"] == ["Qwen2ForCausalLM"]
    assert config["vocab_size"] == V
    assert (config["hidden_size"], config["intermediate_size"]) == (32, 48)
    assert (config["num_hidden_layers"], config["num_attention_heads"]) == (3, 4)
    assert config["num_key_value_heads"] == 2
    assert (config["rope_theta"], config["rms_norm_eps"]) == (5000.0, 1e-5)
    assert config["max_position_embeddings"] == 96
    assert config["hidden_act"] == "silu" and config["tie_word_embeddings"] is False


def test_hf_state_dict_has_every_qwen2_parameter_and_nothing_else():
    torch.manual_seed(0)
    model = LLM(CFG, V)
    want = qwen2_parameter_shapes(model.hf_config())
    got = model.hf_state_dict()
    assert sorted(set(want) - set(got)) == []  # missing
    assert sorted(set(got) - set(want)) == []  # extra
    assert {k: tuple(v.shape) for k, v in got.items()} == want
    # the tensors are the model's own, under their HF names
    assert torch.equal(got["model.layers.2.self_attn.k_proj.bias"],
                       model.layers[2].self_attn.k_proj.bias)
    assert torch.equal(got["model.layers.1.mlp.down_proj.weight"], model.layers[1].mlp.down_proj.weight)
    assert torch.equal(got["lm_head.weight"], model.lm_head.weight)
    assert torch.equal(got["model.embed_tokens.weight"], model.embed_tokens.weight)
    assert not torch.equal(got["lm_head.weight"], got["model.embed_tokens.weight"])
