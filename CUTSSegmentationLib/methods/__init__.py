"""The peer methods of the field, in the same engine and with the same outputs as CUTS.

- `objectives`: alternative encoder objectives for `training.train_encoder` (``TrainConfig.objective``):
  ``"infomax"`` (boundary-aware information maximisation), ``"iic"`` (its alpha = 0, no-boundary special
  case) and ``"cgc"`` (CGC's GMM-pseudo-label-guided objective). Their encoders are the CUTS encoder, so
  their embeddings go through the same condensation; their cluster head also gives a single-granularity map
  (`clusterhead.cluster_head_map`).
- `s3net`: S3-Net, a per-image self-supervised clustering network (`segment_image_s3net`).
- `cgc`: CGC's "GMM with threshold" baseline (`segment_image_gmm`) and the Gaussian mixture (own EM).
- `atlas`: CLMorph's atlas transfer by contrastive registration (`segment_image_atlas`); it NEEDS one
  labelled reference image, unlike everything else in this package.
- `transforms`: the shared random gamma + affine views and Sobel filters.
- `common`: a single label map as a one-level `Hierarchy`, so every method writes the same files.

See docs/benchmarks-peers.md for how they compare on the retina data and what their papers report.
"""

METHODS = ("cuts", "s3net", "atlas", "gmm")
