"""State-dict adapters round-trip: engine names -> Hugging Face names -> engine names, same tensors, and the
Hugging Face side loads into the transformers model with the same outputs."""

from __future__ import annotations

import pytest
import torch

from factory.errors import InputError
from factory.model import PRESETS, build_model
from factory.model.state_dict import HFAdapter, PrefixAdapter

# Top-level renames of an engine that names the blocks `decoder.layers` (as Megatron-Core does).
ENGINE = PrefixAdapter({"embedding.word_embeddings.": "model.embeddings.", "decoder.layers.": "model.layers.",
                        "decoder.final_norm.": "model.norm_f.", "output_layer.": "lm_head."})


def test_round_trip_through_engine_names_keeps_every_tensor_and_the_outputs():
    torch.manual_seed(0)
    model = build_model(PRESETS["tiny"](), 64).eval()
    hf = model.state_dict()
    engine = ENGINE.from_hf(hf)
    assert "decoder.layers.0.mixer.in_proj.weight" in engine and "output_layer.weight" in engine
    assert not any(name.startswith(("model.", "lm_head")) for name in engine)
    back = ENGINE.to_hf(engine)
    assert list(back) == list(hf) and all(back[k] is hf[k] for k in hf)

    torch.manual_seed(1)
    fresh = build_model(PRESETS["tiny"](), 64).eval()
    fresh.load_state_dict(back, strict=True)
    ids = torch.arange(2, 18).unsqueeze(0)
    with torch.no_grad():
        assert torch.equal(fresh(input_ids=ids).logits, model(input_ids=ids).logits)
    assert HFAdapter().to_hf(hf) == dict(hf) and HFAdapter().from_hf(hf) == dict(hf)


def test_an_unmapped_name_is_an_error_not_a_silent_drop():
    with pytest.raises(InputError, match="'backbone.x.weight' matches no prefix"):
        ENGINE.to_hf({"backbone.x.weight": torch.zeros(1)})
    with pytest.raises(ValueError, match="ambiguous"):
        PrefixAdapter({"a.": "model.", "b.": "model."})
