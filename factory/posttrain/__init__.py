"""Post-training: the chat format with Llama-Nemotron's reasoning switch (`chat`), verified post-training
data (`data`, stage kind "posttrain_data"), supervised fine-tuning on assistant tokens (`sft`, kind "sft"),
GRPO with verifiable rewards (`rl`, kind "rl") and preference optimisation (`preference`, kind "preference").

Every stage takes a checkpoint and gives a checkpoint on the factory's one trainer; the losses are objective
modules in `factory.train`. Stage modules never import each other: what they share (the chat template, the
conversation records, rollouts and rewards) lives in the library modules of this package.
"""
