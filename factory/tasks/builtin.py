"""What the evaluate stage reads by default, as text: the built-in sets' items and the default prompts.

Curate's decontamination removes all of it from the corpus (`builtin_eval_items`), so the factory never
trains on what it evaluates on. Importing this module loads no torch.
"""

from __future__ import annotations

from factory.tasks.sets import builtin_path, builtin_sets, read_set

DEFAULT_PROMPTS = [
    "The history of the city",
    "Scientists have found that",
    "In the morning, the",
]


def builtin_eval_items() -> list[tuple[str, str]]:
    """(set name, text) for every built-in set item (context + target as one text) and every default prompt."""
    items = [(name, item.context + item.target) for name in builtin_sets() for item in read_set(builtin_path(name))]
    return items + [("evaluate_prompts", prompt) for prompt in DEFAULT_PROMPTS]
