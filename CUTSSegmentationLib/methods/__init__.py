"""The peer methods of the field that segment one image each, with the same outputs as CUTS.

- `registry`: the per-image methods of ``cuts segment --method``: `s3net`, `gmm`, `atlas` (which NEEDS one
  labelled reference image); `labels` turns their single label map into a one-level `Hierarchy`,
  `preprocessing` checks and scales their input.

The peer methods' encoder objectives (infomax, IIC, CGC) train the CUTS encoder, so they live with it in
`learn` (`learn.peer_objectives`). See docs/peer-methods.md for what each paper specifies.
"""
