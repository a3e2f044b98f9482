"""The tokenize stage: train a byte-level BPE tokenizer on the corpus and write Megatron token data.

Input "corpus" (a curate artifact): `documents/*.jsonl.gz`, one {"id", "text", "metadata"} per line.
Optional input "synthetic" (a synth artifact, same layout; `metadata.source_id` names the corpus document
each synthetic one was written from).
Output:
    tokenizer/            transformers `save_pretrained` folder (bos/eos/pad/unk set; the chat markers reserved
                          as special tokens and the chat template in chat_template.jinja, see
                          factory.posttrain.chat)
    train.bin, train.idx  Megatron indexed dataset, one document per sequence, each ending with EOS
    valid.bin, valid.idx  held-out documents, chosen by a stable hash of the document id
    synthetic.bin, .idx   with a "synthetic" input: its documents, except those written from a held-out
                          document (that would leak valid text into training); pretrain's `blend` names
                          this dataset "synthetic" to mix it with "train", as Nemotron-CC blends real and
                          synthetic tokens
    stats.json            document and token counts, skipped records, special token ids

The tokenizer learns from real training documents only, so adding synthetic data does not change it.

Run alone (outside the pipeline):

    from factory.stage import Artifact, StepContext
    import factory.tokenize as tokenize
    tokenize.run(tokenize.Config(), {"corpus": Artifact(corpus_dir, manifest)}, out_dir, StepContext("tokenize"))

The corpus is streamed several times (split and sample, tokenizer training, one encoding pass per
split) rather than held in memory, so its size is bounded by disk, not RAM.
"""

from factory.lazy import lazy_exports
from factory.tokenize.config import Config
from factory.tokenize.stage import KIND, run

# megatron-core takes seconds to import; only code that touches token data should pay for it,
# not everything that merely reads this stage's Config.
__getattr__ = lazy_exports(__name__, {"write_indexed": "factory.tokens", "PackedSequences": "factory.tokens"})

__all__ = ["Config", "KIND", "run", "write_indexed", "PackedSequences"]
