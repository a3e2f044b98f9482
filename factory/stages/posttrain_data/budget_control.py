"""Budget-control training data (Nemotron Nano 2): verified mode-on solutions cut at a sampled thinking budget,
closed, and answered, so that SFT teaches a model to answer well after the generator's `thinking_budget` cuts it.

    cutter = BudgetCutter(config.budget_control, tokenizer)
    copies, counts = cutter.cut(kept)     # [Conversation "...-budget8"], {"written": 3, "uncut": 1, "budget_8": 3}

A copy is what the generator writes at inference under the same budget: the reply's first `budget` tokens (counted
from its first token, the `<think>` marker included, in the tokenizer of the model the data trains), closed by the
generator's own `close_thinking` (the bridge sentence, then the end-of-thinking marker), then the full trace's
answer. Which solutions are copied and at which budget are drawn from (seed, record id) alone, so the same config
writes the same copies whatever the order or batching of the solutions. A budget is drawn among those that cut the
thinking short (a budget the whole think block fits in would copy the full trace); a solution that every budget fits
is counted `uncut` and not copied.
"""

from __future__ import annotations

import random
from collections import Counter
from collections.abc import Sequence
from typing import Any

from factory.chat.records import Conversation, Message
from factory.generate.params import GenerationParams, close_thinking
from factory.stages.posttrain_data.config import BudgetControl

__all__ = ["BudgetCutter"]


class BudgetCutter:
    """Cuts verified mode-on solutions at budgets drawn from `settings`, counting in `tokenizer`'s tokens."""

    def __init__(self, settings: BudgetControl, tokenizer: Any):
        self.settings = settings
        self.tokenizer = tokenizer
        # the generator's settings at inference under a budget: the same markers, bridge and reasoning switch
        self.params = GenerationParams(reasoning="on", thinking_budget=0, bridge=settings.bridge)
        self.close = self.params.think_markers[1]

    def _head(self, ids: Sequence[int], budget: int) -> str:
        return self.tokenizer.decode(list(ids[:budget]), skip_special_tokens=False)

    def thinking_tokens(self, ids: Sequence[int]) -> int:
        """The fewest leading tokens of a reply that hold its whole think block (the end marker included): every
        budget below it cuts the thinking. A prefix holds the marker from some length on, so a binary search finds it."""
        low, high = 0, len(ids)
        while low < high:
            mid = (low + high) // 2
            if self.close in self._head(ids, mid):
                high = mid
            else:
                low = mid + 1
        return low

    def cut_one(self, content: str, budget: int) -> str | None:
        """`content` ("<think>\\n...\\n</think>\\n\\nFINAL") as the generator would write it under `budget`: cut,
        closed, then FINAL; None when the think block fits in the budget."""
        ids = self.tokenizer(content, add_special_tokens=False)["input_ids"]
        head = self._head(ids, budget)
        if self.close in head:
            return None
        closed = close_thinking(head, self.params)
        assert closed is not None  # reasoning "on": a head without an opening marker gets one
        answer = content[content.index(self.close) + len(self.close):].lstrip("\n")
        return closed + answer

    def cut(self, solutions: Sequence[Conversation]) -> tuple[list[Conversation], Counter]:
        """Cut copies of the drawn mode-on solutions, in the order given, and the counts: `drawn`, `written`, `uncut`
        (every budget fits its thinking) and `budget_N` per budget written."""
        counts: Counter = Counter()
        copies: list[Conversation] = []
        budgets = self.settings.candidates
        for conv in solutions:
            last = conv.messages[-1]
            if conv.reasoning != "on" or self.close not in last.content:
                continue
            rng = random.Random(f"budget_control:{self.settings.seed}:{conv.id}")  # str seeds are hashed stably
            if rng.random() >= self.settings.fraction:
                continue
            counts["drawn"] += 1
            ids = self.tokenizer(last.content, add_special_tokens=False)["input_ids"]
            whole = self.thinking_tokens(ids)
            cutting = [b for b in budgets if b < whole]
            if not cutting:
                counts["uncut"] += 1
                continue
            budget = rng.choice(cutting)
            content = self.cut_one(last.content, budget)
            assert content is not None  # budget < whole: its head lacks the end marker
            # validated again: the copy must still be a well-formed mode-on conversation
            copies.append(Conversation.model_validate({
                **conv.model_dump(), "id": f"{conv.id}-budget{budget}",
                "meta": {**conv.meta, "thinking_budget": budget, "full_trace": conv.id},
                "messages": [*conv.messages[:-1], Message(role="assistant", content=content, tool_calls=last.tool_calls)]}))
            counts["written"] += 1
            counts[f"budget_{budget}"] += 1
        return copies, counts
