"""The generator interface: a local transformers model, or any OpenAI-compatible endpoint, turns prompts
into completions (synth, teachers, evaluation).

Both take a list of prompts and return one completion per prompt, in input order:

    params = GenerationParams(max_new_tokens=256, temperature=0.0)
    TransformersGenerator("runs/model").generate([[{"role": "user", "content": "Hi"}]], params)
    OpenAIGenerator("http://vllm:8000", "nvidia/model").generate(["Once upon a time"], params)

A prompt is either a chat conversation (a list of {"role", "content"} messages) or a plain string.
Chat conversations go through the tokenizer's chat template (local model) or `/v1/chat/completions`
(endpoint); plain strings are completed as they are (`/v1/completions` on an endpoint).
"""

from factory.generate.openai_endpoint import OpenAIGenerator
from factory.generate.params import GenerationParams, Generator, Message, Prompt, flatten_chat
from factory.generate.transformers_model import TransformersGenerator

__all__ = ["GenerationParams", "Generator", "Message", "OpenAIGenerator", "Prompt", "TransformersGenerator",
           "flatten_chat"]
