"""Every snippet on a release's card runs as written, against the release it describes.

The Python blocks run in a fresh virtual environment holding only what the card names (transformers and torch, with
the packages they require; not the factory, not the test extras), one block per process, as a user pastes them. The
serving advice (`transformers serve`, the switch per request) runs against a real server: its greedy replies are
the in-process model's on the same rendered prompt, for the system-prompt switch and for `chat_template_kwargs`.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from importlib import metadata
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from transformers import AutoModelForCausalLM, AutoTokenizer

from factory.stage import Artifact, StepContext
from factory.stages.release import Config, run
from tests.builders import tokenizer
from tests.spine import transformers_serve

CARD_PACKAGES = ("transformers", "torch")  # what the card's snippets import


def _closure(names: tuple[str, ...]) -> list[metadata.Distribution]:
    """The installed distributions `names` need to import: each, and what it requires without extras."""
    seen: dict[str, metadata.Distribution] = {}
    todo = list(names)
    while todo:
        name = canonicalize_name(todo.pop())
        if name in seen:
            continue
        try:
            dist = metadata.distribution(name)
        except metadata.PackageNotFoundError:
            continue  # an optional requirement not installed here (a platform marker's, say)
        seen[name] = dist
        for line in dist.requires or []:
            req = Requirement(line)
            if req.marker is None or req.marker.evaluate({"extra": ""}):
                todo.append(req.name)
    return list(seen.values())


@pytest.fixture(scope="module")
def card_python(tmp_path_factory) -> Path:
    """A venv whose site-packages links only the card's packages and their requirements."""
    venv = tmp_path_factory.mktemp("card_venv") / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    site = next((venv / "lib").glob("python3*/site-packages"))
    for dist in _closure(CARD_PACKAGES):
        base = Path(dist.locate_file(""))
        for top in {f.parts[0] for f in dist.files or [] if f.parts and f.parts[0] != ".."}:
            if top.endswith(".pth") or top == "__pycache__" or (site / top).exists():
                continue
            (site / top).symlink_to(base / top)
    python = venv / "bin" / "python"
    alone = subprocess.run([str(python), "-I", "-c", "import factory"], capture_output=True, text=True, cwd=venv)
    assert alone.returncode != 0 and "No module named 'factory'" in alone.stderr  # only the card's packages
    return python


@pytest.fixture(scope="module")
def chat_release(upstream, tmp_path_factory) -> Path:
    """The session's model released with the tokenize stage's chat tokenizer (as test_release_chat builds it)."""
    root = tmp_path_factory.mktemp("card_release")
    tokens_dir = root / "tokens"
    shutil.copytree(upstream["tokens"].path, tokens_dir)
    shutil.rmtree(tokens_dir / "tokenizer")
    tokenizer("chat", ["The river city has a bridge and a market by the water."] * 50).save_pretrained(tokens_dir / "tokenizer")
    out = root / "release"
    out.mkdir()
    run(Config(model_name="tiny-chat"), {"model": upstream["model"], "tokens": Artifact(tokens_dir, dict(upstream["tokens"].manifest)),
                                         "evaluation": upstream["evaluation"]}, out, StepContext("release"))
    return out


def _blocks(card: str, language: str) -> list[str]:
    return re.findall(rf"^```{language}\n(.*?)^```$", card, flags=re.S | re.M)


def test_every_python_snippet_runs_in_a_venv_of_the_packages_the_card_names(card_python, chat_release, tmp_path):
    card = (chat_release / "README.md").read_text()
    blocks = [b.replace("PATH_TO_THIS_FOLDER", str(chat_release)) for b in _blocks(card, "python")]
    assert len(blocks) == 2  # the chat block and the usage block
    for block in blocks:
        imported = {m.split(".")[0] for m in re.findall(r"^(?:from|import) ([\w.]+)", block, flags=re.M)}
        assert imported <= set(CARD_PACKAGES), imported
        runs = [subprocess.run([str(card_python), "-I", "-c", block], capture_output=True, text=True, cwd=tmp_path,
                               timeout=300, env={"HF_HUB_OFFLINE": "1", "PATH": "/usr/bin:/bin"}) for _ in range(2)]
        assert runs[0].returncode == 0, runs[0].stderr[-3000:]
        assert runs[0].stdout.strip(), block  # it printed a reply
        assert runs[0].stdout == runs[1].stdout  # greedy by default: the same text on every run


def _local_reply(release: Path, messages: list[dict], thinking: bool | None, max_tokens: int) -> str:
    tok = AutoTokenizer.from_pretrained(release, local_files_only=True)
    model = AutoModelForCausalLM.from_pretrained(release, local_files_only=True).eval()
    extra = {} if thinking is None else {"enable_thinking": thinking}
    inputs = tok.apply_chat_template(messages, add_generation_prompt=True, return_dict=True, return_tensors="pt", **extra)
    out = model.generate(**inputs, max_new_tokens=max_tokens, do_sample=False)
    return tok.decode(out[0, inputs["input_ids"].shape[1]:], skip_special_tokens=True)


def _served(reply: dict) -> str:
    message = reply["choices"][0]["message"]
    return (message.get("reasoning_content") or "") + (message.get("content") or "")


@pytest.mark.skipif(shutil.which("curl") is None, reason="curl is not installed (the card's serving snippet uses it)")
def test_the_serving_advice_sets_the_switch_per_request(chat_release, tmp_path):
    card = (chat_release / "README.md").read_text()
    assert f"transformers serve {'PATH_TO_THIS_FOLDER'}`" in card.replace(str(chat_release), "PATH_TO_THIS_FOLDER")
    (curl,) = _blocks(card, "bash")
    question = [{"role": "user", "content": "What is 2 + 3?"}]
    off = _local_reply(chat_release, question, False, 64)
    on = _local_reply(chat_release, question, True, 64)
    assert on != off  # else the server's replies below could not tell the modes apart
    with transformers_serve(chat_release, tmp_path / "serve.log") as url:  # started as the card says: no --reasoning
        command = curl.replace("localhost:8000", url.removeprefix("http://")).replace("PATH_TO_THIS_FOLDER", str(chat_release))
        written = subprocess.run(["bash", "-c", command], capture_output=True, text=True, timeout=300)
        assert written.returncode == 0, written.stderr
        assert _served(json.loads(written.stdout)) == off  # chat_template_kwargs enable_thinking false
        for switch, expected in (("detailed thinking on", on), ("detailed thinking off", off)):
            body = {"model": str(chat_release), "max_tokens": 64,
                    "messages": [{"role": "system", "content": switch}, *question]}
            sent = subprocess.run(["curl", "-s", f"{url}/v1/chat/completions", "-H", "Content-Type: application/json",
                                   "-d", json.dumps(body)], capture_output=True, text=True, timeout=300)
            assert _served(json.loads(sent.stdout)) == expected, switch
