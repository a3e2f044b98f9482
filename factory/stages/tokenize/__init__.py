"""The tokenize stage: train a byte-level BPE tokenizer on the corpus and write Megatron token data.

Input "corpus" (a curate artifact): `documents/*.jsonl.gz`, one {"id", "text", "metadata"} per line.
Optional input "synthetic" (a synth artifact, same layout; `metadata.source_id` names the corpus document
each synthetic one was written from).
Output:
    tokenizer/            transformers `save_pretrained` folder (bos/eos/pad/unk set; the chat markers reserved
                          as special tokens and the chat template in chat_template.jinja, see
                          factory.chat.template)
    train.bin, train.idx  Megatron indexed dataset, one document per sequence, each ending with EOS
    valid.bin, valid.idx  held-out documents, chosen by a stable hash of the document id
    synthetic.bin, .idx   with a "synthetic" input: its documents, except those written from a held-out
                          document (that would leak valid text into training); pretrain's `blend` names
                          this dataset "synthetic" to mix it with "train", as Nemotron-CC blends real and
                          synthetic tokens
    cluster-NN.bin, .idx  with a corpus from the mix stage: one dataset per super-cluster (its training documents)
    blend.json            with a corpus from the mix stage: its blend phases over those datasets, which pretrain
                          trains on when its own `blend` is not set (`factory.stages.tokenize.mixture`)
    stats.json            document and token counts, skipped records, special token ids

The tokenizer learns from real training documents only, so adding synthetic data does not change it.

Run alone (outside the pipeline):

    from factory.stage import Artifact, StepContext
    from factory.stages import tokenize
    tokenize.run(tokenize.Config(), {"corpus": Artifact(corpus_dir, manifest)}, out_dir, StepContext("tokenize"))

The corpus is streamed several times (split and sample, tokenizer training, one encoding pass per
split) rather than held in memory, so its size is bounded by disk, not RAM.
"""

from factory.lazy import lazy_exports
from factory.stages.tokenize.config import Config

# `run` imports the stage's heavy libraries; loading a spec reads only `Config`.
__getattr__ = lazy_exports(__name__, {"run": "factory.stages.tokenize.stage"})

__all__ = ["Config", "run"]
