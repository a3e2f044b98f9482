"""Training objectives as modules (OLMo-core's train modules): each turns a batch into a summed loss and counts what
the trainer normalises by. `causal_lm` (pretraining), `chat_lm` (SFT, assistant tokens only), `grpo`, `dpo` (DPO and
RPO), `reward_regression`, `logit_distill`."""
