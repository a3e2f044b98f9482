"""Benchmark and prompt sets, below the stages that read them (evaluate scores them, curate removes them
from the corpus, post-training draws prompts from them).

    from factory.tasks import read_task_file, humaneval, procedural, builtin_eval_items, task_table
    from factory.tasks import read_lm_eval_task, build_requests     # lm-evaluation-harness task files
"""

from factory.tasks.builtin import DEFAULT_PROMPTS, builtin_eval_items, builtin_task_files, builtin_task_path
from factory.tasks.files import (
    ClozeItem,
    CodeItem,
    MathItem,
    MultipleChoiceItem,
    ShortAnswerItem,
    TaskFile,
    ToolCallItem,
    read_task_file,
    write_task_file,
)
from factory.tasks.humaneval import humaneval
from factory.tasks.lm_eval_task import LmEvalTask, Request, build_requests, doc_scores, read_lm_eval_task
from factory.tasks.procedural import procedural
from factory.tasks.sets import TaskItem, builtin_path, builtin_sets, read_set
from factory.tasks.table import format_metric, results_table, task_table

__all__ = [
    "DEFAULT_PROMPTS", "ClozeItem", "CodeItem", "LmEvalTask", "MathItem", "MultipleChoiceItem", "Request",
    "ShortAnswerItem", "TaskFile", "TaskItem", "ToolCallItem", "build_requests", "builtin_eval_items", "builtin_path",
    "builtin_sets", "builtin_task_files", "builtin_task_path", "doc_scores", "format_metric", "humaneval", "procedural",
    "read_lm_eval_task", "read_set", "read_task_file", "results_table", "task_table", "write_task_file",
]
