"""The MiniLM sentence embeddings curate's semantic dedup and quality classifier use; they live in
`factory.embedding`, below every stage that embeds text (curate, mix)."""

from factory.embedding import EmbeddingConfig, embed, load_model, model_path

__all__ = ["EmbeddingConfig", "embed", "load_model", "model_path"]
