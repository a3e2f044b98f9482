"""What a mix step costs (`factory plan`): the proxy runs it trains (`rounds` x `proxies_per_round` short runs of the
proxy model on bytes, each scored on `eval_windows` windows) and the memory of the ones training at once. The
documents' embeddings and the clustering are not counted. Its corpus holds at most its inputs' text (pruned
clusters are left out), which tokenize plans from."""

from __future__ import annotations

from typing import Any

from factory.cost.estimate import PlanContext, PlannedModel, StepCost
from factory.cost.flops import flops_per_token
from factory.cost.memory import training_memory
from factory.cost.workload import forward_flops
from factory.model.byte_level import byte_vocab


def cost(step: Any, plan: PlanContext) -> StepCost:
    cfg = step.config
    proxy = cfg.proxy
    vocab = byte_vocab(eod=True)  # proxies read bytes, documents packed with an end-of-document symbol
    model = PlannedModel(proxy.model, vocab)
    runs = cfg.rounds * cfg.proxies_per_round
    tokens = runs * proxy.steps * proxy.micro_batch_size * proxy.seq_len
    flops = (flops_per_token(proxy.model, proxy.seq_len, vocab_size=vocab).training * tokens
             + runs * forward_flops(model, proxy.eval_windows * proxy.seq_len, proxy.seq_len))
    one = training_memory(proxy.model, seq_len=proxy.seq_len, micro_batch=proxy.micro_batch_size, vocab_size=vocab)
    data: dict[str, float] = {"proxies": runs, "proxy_tokens": tokens}
    text = [up.data.get("text_bytes", up.data.get("bytes")) for up in
            (plan.upstream(step, "corpus"), plan.upstream(step, "synthetic")) if up is not None]
    if text and None not in text:
        data["text_bytes"] = sum(text)
    workers = cfg.workers
    return plan.cost(step, data=data, flops=flops, memory={f"proxies x{workers}": one.total * workers},
                     memory_total=one.total * workers, estimated=True, **plan.timed(step.name, flops, "fp32"),
                     note=f"{runs} proxy runs of {proxy.steps} steps; memory: {workers} proxies training at once; "
                          "embedding and clustering not counted")
