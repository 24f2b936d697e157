"""The learned part: normalization, the encoder and its objectives, training, embeddings, model files."""
