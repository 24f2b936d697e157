"""CUTSSegmentationLib: the engine of the CUTSSegmentation 3D Slicer extension.

Unsupervised, multigranular segmentation after the CUTS paper (Liu, Amodio et al.): a small convolutional
encoder learns per-pixel embeddings (intra-image contrastive + patch reconstruction), diffusion condensation
turns them into a nested coarse-to-fine hierarchy of label maps, and persistent structures or a seed point
pick one structure out of it.

Pure Python (torch, numpy, scipy, scikit-image, SimpleITK): no `slicer`, no Qt, so the same code serves the
Slicer module, its background process, and a plain command line. Submodules are imported lazily by their
users; importing the package itself is cheap (it does not import torch).
"""

__version__ = "0.1.0"
