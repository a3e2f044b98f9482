"""Prompt templates for synthetic rephrasing, one text file per task, loaded by name.

A task file (`wikipedia.txt`, `diverse_qa.txt`, ...) is the user message; it contains `{document}` exactly
once, where the document's text goes. `system.txt` is the system message shared by every task. A folder
of your own with the same layout replaces the built-in one (`prompt_dir` in the synth config).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

from factory.errors import InputError

BUILTIN = Path(__file__).parent
PLACEHOLDER = "{document}"
SYSTEM = "system"


@dataclass(frozen=True)
class PromptTemplate:
    """One task's prompt: the shared system message and the user message around the document."""

    name: str
    system: str
    user: str

    def messages(self, document: str) -> list[dict[str, str]]:
        """The chat conversation that asks for this task on `document`."""
        user = self.user.replace(PLACEHOLDER, document)
        return ([{"role": "system", "content": self.system}] if self.system else []) + [{"role": "user", "content": user}]

    @property
    def before_document(self) -> str:
        """The user message up to the document: the instruction and the label that introduces the document."""
        return self.user.split(PLACEHOLDER, 1)[0].strip()

    @property
    def preamble(self) -> str:
        """The instruction alone, without a last label line such as "Passage:" (what echoing models repeat)."""
        head, _, last = self.before_document.rpartition("\n")
        return head.strip() if head and last.rstrip().endswith(":") and len(last) < 40 else self.before_document

    @property
    def digest(self) -> str:
        return hashlib.sha256(f"{self.system}\0{self.user}".encode()).hexdigest()[:12]


def available(folder: Path | None = None) -> list[str]:
    """Task names with a prompt file in `folder` (the built-in prompts by default)."""
    folder = Path(folder) if folder else BUILTIN
    return sorted(p.stem for p in folder.glob("*.txt") if p.stem != SYSTEM)


def load_prompt(name: str, folder: str | Path | None = None) -> PromptTemplate:
    """The prompt of task `name` from `folder` (built-in prompts by default)."""
    folder = Path(folder) if folder else BUILTIN
    path = folder / f"{name}.txt"
    if not path.is_file():
        raise InputError(f"{path}: no prompt named {name!r}; available: {', '.join(available(folder)) or 'none'}")
    user = path.read_text(encoding="utf-8").strip()
    if user.count(PLACEHOLDER) != 1:
        raise InputError(f"{path}: must contain {PLACEHOLDER} exactly once, found {user.count(PLACEHOLDER)}")
    system_path = folder / f"{SYSTEM}.txt"
    system = system_path.read_text(encoding="utf-8").strip() if system_path.is_file() else ""
    return PromptTemplate(name=name, system=system, user=user)
