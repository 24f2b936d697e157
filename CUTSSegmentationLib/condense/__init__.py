"""From embeddings to structures: diffusion condensation, the hierarchy, persistent structures, binarization."""
