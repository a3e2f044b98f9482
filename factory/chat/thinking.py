"""A reasoning reply read back: its think block, its final answer, and whether the block is well formed.

    think_state("<think>\n2 plus 3 is 5.\n</think>\n\n5")   # "closed"
    final_answer("<think>\n2 plus 3 is 5.\n</think>\n\n5")  # "5"
    think_state("<think>\n2 plus 3 is")                      # "malformed": never closed (cut at the token limit)

Evaluation scores the final answer (what a user reads) and counts the replies whose block is malformed: one opened
and never closed, a close without an open, more than one block, or text before the block.
"""

from __future__ import annotations

from typing import Literal

from factory.chat.records import split_thinking
from factory.chat.template import THINK_CLOSE, THINK_OPEN

__all__ = ["ThinkState", "final_answer", "think_state", "thinking_of"]

ThinkState = Literal["none", "closed", "malformed"]


def final_answer(reply: str) -> str:
    """The part of a reply after its `</think>` (all of it when there is no think block)."""
    thinking, final = split_thinking(reply)
    if thinking is None and THINK_CLOSE in reply:  # a think block that was not opened at the very start
        return reply.rsplit(THINK_CLOSE, 1)[1].strip()
    return final


def thinking_of(reply: str) -> str:
    """The text inside the reply's think block, without the blank space around it ('' without one; up to the end
    when it was never closed)."""
    if THINK_OPEN not in reply:
        return reply.split(THINK_CLOSE, 1)[0].strip() if THINK_CLOSE in reply else ""
    return reply.split(THINK_OPEN, 1)[1].split(THINK_CLOSE, 1)[0].strip()


def think_state(reply: str) -> ThinkState:
    """"none": no think markers; "closed": one block that opens the reply and is closed; "malformed": anything else."""
    opens, closes = reply.count(THINK_OPEN), reply.count(THINK_CLOSE)
    if opens == closes == 0:
        return "none"
    if opens == closes == 1 and reply.lstrip().startswith(THINK_OPEN):
        return "closed"
    return "malformed"
