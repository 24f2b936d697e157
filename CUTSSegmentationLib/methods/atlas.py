"""Atlas transfer by contrastive registration (CLMorph), 2D. NEEDS ONE LABELLED REFERENCE IMAGE.

The design, its sources and the choices made: docs/peer-methods.md, section `methods/atlas.py`.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ..core.device import resolve_device
from ..core.errors import InputError
from ..core.imagedata import ImageData
from ..core.progress import CancelToken, ProgressCallback, check_cancel, no_progress
from ..io.reading import read_image
from ..learn.sampling import make_generator
from ..learn.transforms import random_affine
from .preprocessing import normalized_2d, require_2d

ATLAS_ITERATIONS = 200
ATLAS_BATCH = 4
ATLAS_LR = 3e-3
ALPHA_SMOOTH = 1.0
BETA_CONTRAST = 0.01
PRIOR_LAMBDA = 10.0
IMAGE_SIGMA = 0.04
CONTRAST_TEMPERATURE = 0.1
INT_STEPS = 7
ENC_WIDTHS = (16, 32, 32, 32)

NEEDS_ATLAS = (
    "--method atlas needs one labelled reference: --atlas IMAGE,LABELS (an image and its label map; "
    "this is the one method here that is not label-free)"
)


def _conv(c_in: int, c_out: int, stride: int = 1) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(c_in, c_out, 3, stride=stride, padding=1), nn.LeakyReLU(0.2))


class RegistrationNet(nn.Module):
    """Shared encoder for (x, y), one decoder to the velocity mean and log-variance, projection head."""

    def __init__(self, in_channels: int = 1, widths: Sequence[int] = ENC_WIDTHS, proj_dim: int = 32) -> None:
        super().__init__()
        self.enc = nn.ModuleList()
        c = in_channels
        for i, w in enumerate(widths):
            self.enc.append(_conv(c, w, stride=1 if i == 0 else 2))
            c = w
        self.dec = nn.ModuleList()
        up_c = 0
        for w in reversed(widths):
            self.dec.append(_conv(2 * w + up_c, w))
            up_c = w
        self.flow_mean = nn.Conv2d(widths[0], 2, 3, padding=1)
        self.flow_logvar = nn.Conv2d(widths[0], 2, 3, padding=1)
        nn.init.normal_(self.flow_mean.weight, 0.0, 1e-5)  # start near the identity, as VoxelMorph
        nn.init.zeros_(self.flow_mean.bias)
        nn.init.normal_(self.flow_logvar.weight, 0.0, 1e-10)
        nn.init.constant_(self.flow_logvar.bias, -10.0)
        self.proj = nn.Linear(widths[-1], proj_dim)

    def encode(self, x: torch.Tensor) -> list[torch.Tensor]:
        feats = []
        for layer in self.enc:
            x = layer(x)
            feats.append(x)
        return feats

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """-> velocity mean (B, 2, H, W) in pixels (dy, dx), log-variance, projections of x and of y."""
        fx, fy = self.encode(x), self.encode(y)
        h = None
        for i, layer in enumerate(self.dec):
            level = len(fx) - 1 - i
            parts = [fx[level], fy[level]]
            if h is not None:
                parts.append(F.interpolate(h, size=fx[level].shape[-2:], mode="bilinear", align_corners=False))
            h = layer(torch.cat(parts, dim=1))
        assert h is not None
        px = self.proj(fx[-1].mean(dim=(2, 3)))
        py = self.proj(fy[-1].mean(dim=(2, 3)))
        return self.flow_mean(h), self.flow_logvar(h), px, py


def warp_by_displacement(img: torch.Tensor, disp: torch.Tensor, mode: str = "bilinear") -> torch.Tensor:
    """img (B, C, H, W) sampled at p + disp(p), disp (B, 2, H, W) in pixels as (dy, dx); border padding."""
    b, _, h, w = disp.shape
    ys = torch.arange(h, device=disp.device, dtype=disp.dtype).view(1, h, 1)
    xs = torch.arange(w, device=disp.device, dtype=disp.dtype).view(1, 1, w)
    py = ys + disp[:, 0]
    px = xs + disp[:, 1]
    grid = torch.stack([(2 * px + 1) / w - 1, (2 * py + 1) / h - 1], dim=-1)
    return F.grid_sample(img, grid, mode=mode, padding_mode="border", align_corners=False)


def integrate_velocity(v: torch.Tensor, steps: int = INT_STEPS) -> torch.Tensor:
    """Scaling and squaring: the displacement of exp(v) for a stationary velocity field v (pixels)."""
    disp = v / (2**steps)
    for _ in range(steps):
        disp = disp + warp_by_displacement(disp, disp)
    return disp


def smooth_loss(mean: torch.Tensor, logvar: torch.Tensor, prior_lambda: float = PRIOR_LAMBDA) -> torch.Tensor:
    """KL(q(z) || p(z)) with VoxelMorph-diff's Laplacian prior (see the module docstring), per pixel mean."""
    degree = 4.0
    sigma_term = (prior_lambda * degree * torch.exp(logvar) - logvar).mean()
    dy = mean[:, :, 1:, :] - mean[:, :, :-1, :]
    dx = mean[:, :, :, 1:] - mean[:, :, :, :-1]
    prec_term = prior_lambda * ((dy * dy).mean() + (dx * dx).mean())
    return 0.5 * (sigma_term + prec_term)


def contrastive_loss(px: torch.Tensor, py: torch.Tensor, temperature: float = CONTRAST_TEMPERATURE) -> torch.Tensor:
    """InfoNCE: x_b's positive is y_b, its negatives the other x_j of the batch (0 for a batch of one)."""
    b = px.shape[0]
    if b < 2:
        return px.sum() * 0.0
    zx, zy = F.normalize(px, dim=1), F.normalize(py, dim=1)
    pos = (zx * zy).sum(dim=1, keepdim=True)
    others = zx @ zx.t()
    others = others.masked_fill(torch.eye(b, dtype=torch.bool, device=px.device), float("-inf"))
    logits = torch.cat([pos, others], dim=1) / temperature
    return F.cross_entropy(logits, torch.zeros(b, dtype=torch.long, device=px.device))


@dataclass
class AtlasRegistration:
    """A trained registration network and the settings it was trained with."""

    net: RegistrationNet
    info: dict[str, Any] = field(default_factory=dict)
    loss_history: list[float] = field(default_factory=list)


def _gray(image: ImageData, size: Optional[tuple[int, int]] = None) -> torch.Tensor:
    x = normalized_2d(image, gray=True)
    if size is not None and tuple(x.shape[-2:]) != tuple(size):
        x = F.interpolate(x, size=size, mode="bilinear", align_corners=False)
    return x


def _augment(x: torch.Tensor, n: int, gen: torch.Generator) -> torch.Tensor:
    theta = random_affine(
        n, x.shape[-2:], gen, max_rotation_deg=10.0, scale_range=(0.95, 1.05), max_translation=0.05, flip=True
    )
    grid = F.affine_grid(theta.to(x.device), [n, x.shape[1], *x.shape[-2:]], align_corners=False)
    return F.grid_sample(x.expand(n, -1, -1, -1), grid, mode="bilinear", padding_mode="border", align_corners=False)


def train_atlas_registration(
    images: Sequence[ImageData],
    atlas_image: ImageData,
    *,
    iterations: int = ATLAS_ITERATIONS,
    batch_size: int = ATLAS_BATCH,
    lr: float = ATLAS_LR,
    seed: int = 0,
    device: str = "cpu",
    progress: ProgressCallback = no_progress,
    cancel: Optional[CancelToken] = None,
) -> AtlasRegistration:
    """Train the registration network to warp `atlas_image` onto each of `images` (no labels used).

    Every image must have the atlas's size after resampling (the atlas is resampled to the first image's
    size); each batch draws `batch_size` images (with replacement) under small random augmentations.
    """
    if not images:
        raise InputError("atlas registration needs at least one image to register to")
    for im in list(images) + [atlas_image]:
        require_2d(im, "atlas")
    dev = resolve_device(device)
    size = tuple(images[0].array.shape[1:3])
    xs = [_gray(im, size).to(dev) for im in images]
    y = _gray(atlas_image, size).to(dev)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        net = RegistrationNet(1).to(dev)
    gen = make_generator(seed + 1)
    optimiser = torch.optim.Adam(net.parameters(), lr=lr)
    history: list[float] = []
    net.train()
    t0 = time.perf_counter()
    progress("atlas", 0.0, f"registration: {iterations} iterations x {batch_size} on {size[0]}x{size[1]}")
    for it in range(iterations):
        check_cancel(cancel)
        pick = torch.randint(0, len(xs), (batch_size,), generator=gen).tolist()
        x = torch.cat([_augment(xs[i], 1, gen) for i in pick], dim=0)
        yb = y.expand(batch_size, -1, -1, -1)
        mean, logvar, px, py = net(x, yb)
        eps = torch.randn(mean.shape, generator=gen).to(dev)
        v = mean + torch.exp(0.5 * logvar) * eps
        moved = warp_by_displacement(yb, integrate_velocity(v))
        recon = ((x - moved) ** 2).mean() / (2 * IMAGE_SIGMA**2)
        smooth = smooth_loss(mean, logvar)
        con = contrastive_loss(px, py)
        total = recon + ALPHA_SMOOTH * smooth + BETA_CONTRAST * con
        optimiser.zero_grad(set_to_none=True)
        total.backward()
        optimiser.step()
        history.append(float(total.detach()))
        progress("atlas", (it + 1) / iterations, f"iteration {it + 1}/{iterations} loss {history[-1]:.4f}")
    net.eval()
    info = {
        "method": "atlas (CLMorph, 2D)",
        "iterations": iterations,
        "batch_size": batch_size,
        "lr": lr,
        "alpha": ALPHA_SMOOTH,
        "beta": BETA_CONTRAST,
        "prior_lambda": PRIOR_LAMBDA,
        "image_sigma": IMAGE_SIGMA,
        "n_images": len(images),
        "seconds": round(time.perf_counter() - t0, 2),
    }
    return AtlasRegistration(net, info, history)


def _atlas_labels(labels: np.ndarray, size: tuple[int, int]) -> tuple[torch.Tensor, np.ndarray]:
    """One-hot (1, L, H, W) of the atlas labels resampled (nearest) to `size`, and the label values."""
    lab = np.asarray(labels)
    lab = np.squeeze(lab)
    if lab.ndim != 2:
        raise InputError(f"atlas labels must be a 2D label map, got shape {np.shape(labels)}")
    if lab.dtype == bool:
        lab = lab.astype(np.uint8)
    if not np.issubdtype(lab.dtype, np.integer):
        if not np.all(np.isfinite(lab)) or not np.all(lab == np.round(lab)):
            raise InputError("atlas labels must be integers (a label map), not intensities")
        lab = lab.astype(np.int64)
    values, inverse = np.unique(lab, return_inverse=True)
    index = torch.from_numpy(inverse.reshape(lab.shape).astype(np.int64))[None, None].float()
    if tuple(index.shape[-2:]) != tuple(size):
        index = F.interpolate(index, size=size, mode="nearest")
    onehot = F.one_hot(index[0, 0].long(), len(values)).permute(2, 0, 1)[None].float()
    return onehot, values


def segment_image_atlas(
    image: ImageData,
    atlas_image: ImageData,
    atlas_labels: np.ndarray,
    *,
    registration: Optional[AtlasRegistration] = None,
    iterations: int = ATLAS_ITERATIONS,
    seed: int = 0,
    device: str = "cpu",
    progress: ProgressCallback = no_progress,
    cancel: Optional[CancelToken] = None,
) -> np.ndarray:
    """The atlas's labels warped onto `image`: uint16 (1 + index of the atlas label value), image shape.

    Without `registration`, a network is trained on this one (image, atlas) pair first (per-image
    instance optimisation); pass one from `train_atlas_registration` to reuse a dataset-trained network.
    """
    require_2d(image, "atlas")
    require_2d(atlas_image, "atlas")
    dev = resolve_device(device)
    size = tuple(image.array.shape[1:3])
    onehot, values = _atlas_labels(atlas_labels, tuple(atlas_image.array.shape[1:3]))
    if tuple(onehot.shape[-2:]) != size:
        onehot = F.interpolate(onehot, size=size, mode="nearest")
    if registration is None:
        registration = train_atlas_registration(
            [image], atlas_image, iterations=iterations, seed=seed, device=device, progress=progress, cancel=cancel
        )
    net = registration.net.to(dev).eval()
    with torch.no_grad():
        x = _gray(image).to(dev)
        y = _gray(atlas_image, size).to(dev)
        mean, _, _, _ = net(x, y)
        disp = integrate_velocity(mean)
        warped = warp_by_displacement(onehot.to(dev), disp)
    labels = warped.argmax(dim=1)[0].cpu().numpy() + 1
    return labels.astype(np.uint16).reshape(image.spatial_shape)


def parse_atlas_argument(text: Optional[str]) -> tuple[ImageData, np.ndarray]:
    """``IMAGE,LABELS`` from the command line -> (atlas image, label map); one clear `InputError` otherwise.

    LABELS may be any label image the engine reads (NRRD, NIfTI, PNG, ...) or a ``.npy`` array.
    """
    if not text:
        raise InputError(NEEDS_ATLAS)
    if "," not in text:
        raise InputError(f"--atlas needs two paths, IMAGE,LABELS, got '{text}'")
    image_path, label_path = (part.strip() for part in text.rsplit(",", 1))
    atlas = read_image(image_path)
    lp = Path(label_path)
    if lp.suffix.lower() == ".npy":
        if not lp.is_file():
            raise InputError(f"atlas label file not found: {lp}")
        try:
            labels = np.load(lp, allow_pickle=False)
        except (ValueError, OSError) as exc:
            raise InputError(f"cannot read atlas labels {lp}: {exc}") from None
    else:
        labels = read_image(label_path).array[..., 0]
    labels = np.squeeze(np.asarray(labels))
    if labels.shape != tuple(atlas.array.shape[1:3]):
        raise InputError(
            f"atlas labels {label_path} are {labels.shape}, the atlas image is {tuple(atlas.array.shape[1:3])}"
        )
    return atlas, labels


def describe(registration: Optional[AtlasRegistration] = None) -> dict[str, Any]:
    info: dict[str, Any] = {"method": "atlas", "needs": "one labelled reference image (--atlas IMAGE,LABELS)"}
    if registration is not None:
        info.update(registration.info)
    return info
