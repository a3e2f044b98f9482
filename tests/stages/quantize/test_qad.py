"""Quantization-aware distillation (QAD, after NVIDIA's NVFP4 report): the distill stage trains the student with its
linears fake-quantized to NVFP4 (`precision: nvfp4`, 1 x 16 weight blocks as the export packs them, every linear but
lm_head) from the BF16 teacher; the quantize stage exports that student like any PTQ variant, and the exported NVFP4
model's perplexity is what the distillation measured on the same windows."""

from __future__ import annotations

import math

import pytest

from factory.stage import StepContext

# The QAD recipe: the export's own quantization in training (1 x 16 weight blocks, only lm_head kept in BF16)
QAD = {"precision": "nvfp4", "precision_options": {"high_precision_layers": ["lm_head"], "nvfp4_weight_2d_blocks": False}}


def test_a_qad_student_exports_with_the_perplexity_its_training_measured(q_model, tokens, tmp_path):
    from factory.stages.distill import stage as distill
    from factory.stages.quantize import stage as quantize
    from tests.builders import publish

    cfg = distill.Config(steps=20, seq_len=32, micro_batch_size=8, lr=1e-3, warmup_steps=2, checkpoint_interval=0,
                         valid_samples=16, **QAD)
    result = distill.run(cfg, {"student": q_model, "teacher": q_model, "tokens": tokens}, tmp_path / "qad", StepContext("distill"))
    student = publish(tmp_path / "qad", "distill", "checkpoint", inputs={"student": q_model, "teacher": q_model, "tokens": tokens})
    qcfg = quantize.Config(variants=["nvfp4"], calibration_samples=16, eval_samples=16, seq_len=32, tasks=[], compressed_tensors=False,
                           max_ppl_increase={"nvfp4": 0.03})
    metrics = quantize.run(qcfg, {"model": student, "tokens": tokens}, tmp_path / "quantized", StepContext("quantize"))
    # training measured the fake-quantized student (dynamic input scales, one global scale per weight); the export
    # serves it with calibrated input scales and q/k/v sharing one: the same model within a percent
    promised = math.exp(result["valid_loss_after"])
    assert metrics["nvfp4_perplexity"] == pytest.approx(promised, rel=0.01)
