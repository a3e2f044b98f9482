"""Verifiers shared by evaluation and RL rewards: math answers, sandboxed code, multiple choice, tool calls.

    from factory.verify import MathVerifier, SandboxConfig, check_choice, check_tool_calls, run_tests
"""

from factory.verify.choice import (
    check_choice,
    check_short_answer,
    extract_choice,
    multiple_choice_prompt,
    normalize_answer,
    open_ended_prompt,
)
from factory.verify.math_answer import MathVerdict, MathVerifier
from factory.verify.sandbox import (
    SandboxConfig,
    SandboxUnavailable,
    Verdict,
    run_many,
    run_many_tests,
    run_program,
    run_tests,
)
from factory.verify.tool_calls import ToolCall, ToolCallVerdict, check_tool_calls, parse_tool_calls

__all__ = [
    "MathVerdict", "MathVerifier", "SandboxConfig", "SandboxUnavailable", "ToolCall", "ToolCallVerdict", "Verdict",
    "check_choice", "check_short_answer", "check_tool_calls", "extract_choice", "multiple_choice_prompt",
    "normalize_answer", "open_ended_prompt", "parse_tool_calls", "run_many", "run_many_tests", "run_program", "run_tests",
]
