"""Chats, below every stage that reads or writes them: the factory's chat template with Llama-Nemotron's reasoning
switch (`template`: tokenize writes it into the tokenizer, post-training renders with it, release ships it) and the
conversation records of post-training data (`records`: posttrain_data writes them; sft, rl and preference read them)."""
