"""`factory plan` costs the compress -> distill -> quantize chain: FLOPs and memory of each, and the sizes of the
exported variants."""

from __future__ import annotations

import pytest

from factory.cost.param_count import parameter_counts
from factory.plan import plan_spec
from factory.spec import parse_spec


def test_plan_costs_compress_distill_and_quantize_with_the_variant_sizes(tmp_path):
    spec = parse_spec({"name": "chain", "work_dir": str(tmp_path / "work"), "storage": {"root": str(tmp_path / "store")},
                       "model": {"preset": "tiny"},
                       "stages": {"curate": {"sources": [str(tmp_path)]}, "tokenize": {"vocab_size": 2048},
                                  "pretrain": {"steps": 100}, "compress": {"target": {"hidden_size": 48}}, "distill": {"steps": 100},
                                  "quantize": {"variants": ["fp8", "nvfp4", "mixed"], "bits_budget": 6.0}}})
    steps = {s.step: s for s in plan_spec(spec).steps}
    for name in ("compress", "distill", "quantize"):
        assert steps[name].flops > 0 and steps[name].memory_total > 0, name
    q = steps["quantize"].data
    student = steps["distill"].model
    counts = parameter_counts(student.config, student.vocab_size)
    linears = sum(counts.by_part.get(p, 0) for p in ("mamba", "attention", "mlp", "moe_shared"))
    rest = 2 * (counts.total - linears)
    assert q["fp8_bytes"] == round(rest + linears) and q["nvfp4_bytes"] == round(rest + linears * 0.5625)
    assert q["mixed_bytes"] == pytest.approx(rest + linears * 6 / 8, abs=1)
    assert q["nvfp4_bytes"] < q["mixed_bytes"] < q["fp8_bytes"] < 2 * counts.total
