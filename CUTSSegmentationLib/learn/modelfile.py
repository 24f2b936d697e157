"""Trained models on disk: weights in safetensors, a JSON "model card" describing how they were made.

The design, its sources and the choices made: docs/architecture.md, section `learn/modelfile.py`.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional, Sequence, Union

import torch
from safetensors.torch import load as st_load
from safetensors.torch import save as st_save

from ..core.device import resolve_device
from ..core.errors import ModelFileError
from ..core.imagedata import ImageData
from ..io.sequences import describe_sequences, sequence_names
from ..io.staging import atomic_write_files
from .encoder import ClusterHead, CUTSEncoder

FORMAT_TAG = "cuts-segmentation-model"
FORMAT_VERSION = 1
#: Keys every card must have for the model to be rebuilt and used.
REQUIRED_CARD_KEYS = ("channels", "embed_dim", "normalisation")
#: Key prefix of the cluster head's tensors in the safetensors file.
CLUSTER_HEAD_PREFIX = "cluster_head."
_MAX_HEADER = 64 * 1024 * 1024

PathLike = Union[str, "os.PathLike[str]"]


@dataclass
class TrainedModel:
    """An encoder (in eval mode) and the card that says how it was trained and how to feed it."""

    encoder: torch.nn.Module
    card: dict[str, Any] = field(default_factory=dict)
    #: The K-way cluster head of a peer objective (infomax, iic, cgc); None for a CUTS model.
    cluster_head: Optional[torch.nn.Module] = None

    def __post_init__(self) -> None:
        self.encoder.eval()
        if self.cluster_head is not None:
            self.cluster_head.eval()

    @property
    def channels(self) -> int:
        return int(self.card.get("channels", getattr(self.encoder, "in_channels", 0)))

    @property
    def embed_dim(self) -> int:
        return int(self.card.get("embed_dim", getattr(self.encoder, "embed_dim", 0)))

    @property
    def device(self) -> torch.device:
        return next(self.encoder.parameters()).device

    def to(self, device: Union[str, torch.device]) -> "TrainedModel":
        self.encoder.to(device)
        if self.cluster_head is not None:
            self.cluster_head.to(device)
        return self


def card_path(path: PathLike) -> Path:
    """The side JSON card of a model file: same folder and stem, ".json"."""
    return Path(path).with_suffix(".json")


def save_model(model: TrainedModel, path: PathLike) -> Path:
    """Write MODEL.safetensors (weights + card metadata) and MODEL.json (card copy) together, atomically.

    Parameters
    ----------
    model : TrainedModel
        Encoder, card and optional cluster head.
    path : str or Path
        ``MODEL.safetensors``; the card goes to ``MODEL.json`` beside it.

    Returns
    -------
    Path
        The ``.safetensors`` file written (the card is beside it).

    Examples
    --------
    >>> save_model(model, "retina.safetensors")  # doctest: +SKIP
    PosixPath('retina.safetensors')
    """
    path = Path(path)
    if card_path(path) == path:
        raise ModelFileError(f"model path {path.name} would collide with its JSON card; use a .safetensors name")
    card = dict(model.card)
    card.setdefault("channels", model.channels)
    card.setdefault("embed_dim", model.embed_dim)
    card["format"] = FORMAT_TAG
    card["format_version"] = FORMAT_VERSION
    missing = [k for k in REQUIRED_CARD_KEYS if k not in card]
    if missing:
        raise ValueError(f"model card lacks {', '.join(missing)}")
    tensors = {k: v.detach().to("cpu").contiguous() for k, v in model.encoder.state_dict().items()}
    if model.cluster_head is not None:
        card["cluster_head"] = {"n_clusters": int(model.cluster_head.n_clusters)}
        for k, v in model.cluster_head.state_dict().items():
            tensors[CLUSTER_HEAD_PREFIX + k] = v.detach().to("cpu").contiguous()
    else:
        card.pop("cluster_head", None)
    card_text = json.dumps(card, sort_keys=True, default=_json_default)
    metadata = {"format": FORMAT_TAG, "format_version": str(FORMAT_VERSION), "card": card_text}
    pretty = json.dumps(card, indent=2, sort_keys=True, default=_json_default) + "\n"
    atomic_write_files({path: st_save(tensors, metadata=metadata), card_path(path): pretty.encode()})
    return path


def _json_default(obj: Any) -> Any:
    if hasattr(obj, "tolist"):
        return obj.tolist()
    if isinstance(obj, Path):
        return str(obj)
    raise TypeError(f"{type(obj).__name__} is not JSON serialisable")


def read_card(path: PathLike) -> dict[str, Any]:
    """The card from a model file's safetensors header, validated, without reading the weights."""
    path = Path(path)
    header = _read_header(path, _read_bytes(path))
    return _card_from_header(path, header)


def _read_bytes(path: Path) -> bytes:
    if not path.exists():
        raise ModelFileError(f"model file not found: {path}")
    if path.is_dir():
        raise ModelFileError(f"model path is a folder, expected a .safetensors file: {path}")
    try:
        return path.read_bytes()
    except OSError as exc:
        raise ModelFileError(f"cannot read model file {path}: {exc.strerror or exc}") from exc


def _read_header(path: Path, data: bytes) -> dict[str, Any]:
    if len(data) < 8:
        raise ModelFileError(f"{path.name} is not a CUTS model: file is empty or truncated ({len(data)} bytes)")
    n = int.from_bytes(data[:8], "little")
    if n < 2 or n > _MAX_HEADER or n > len(data) - 8:
        raise ModelFileError(f"{path.name} is not a CUTS model: not a safetensors file, or truncated")
    try:
        header = json.loads(data[8 : 8 + n].decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError):
        raise ModelFileError(f"{path.name} is not a CUTS model: not a safetensors file (unreadable header)") from None
    if not isinstance(header, dict):
        raise ModelFileError(f"{path.name} is not a CUTS model: not a safetensors file (bad header)")
    return header


def _card_from_header(path: Path, header: dict[str, Any]) -> dict[str, Any]:
    meta = header.get("__metadata__") or {}
    if not isinstance(meta, dict) or meta.get("format") != FORMAT_TAG:
        raise ModelFileError(
            f"{path.name} is a safetensors file but not a CUTSSegmentation model (no '{FORMAT_TAG}' format tag)"
        )
    try:
        version = int(meta.get("format_version", "0"))
    except ValueError:
        version = -1
    if version < 1:
        raise ModelFileError(f"{path.name}: unknown CUTS model format version {meta.get('format_version')!r}")
    if version > FORMAT_VERSION:
        raise ModelFileError(
            f"{path.name} was written by a newer CUTSSegmentation (model format {version}, this one reads "
            f"{FORMAT_VERSION}); update the extension"
        )
    try:
        card = json.loads(meta.get("card", ""))
    except json.JSONDecodeError:
        raise ModelFileError(f"{path.name}: the model card in the file is corrupt") from None
    if not isinstance(card, dict):
        raise ModelFileError(f"{path.name}: the model card in the file is corrupt")
    missing = [k for k in REQUIRED_CARD_KEYS if k not in card]
    if missing:
        raise ModelFileError(f"{path.name}: the model card lacks {', '.join(missing)}")
    return card


def load_model(path: PathLike, device: Union[str, torch.device] = "cpu") -> TrainedModel:
    """Read a model written by `save_model` (safetensors only, never pickle); `ModelFileError` on any problem.

    Given the side ``.json`` card instead, the ``.safetensors`` file next to it is loaded.

    Parameters
    ----------
    path : str or Path
        ``MODEL.safetensors`` (or its ``MODEL.json`` card).
    device : str or torch.device
        Where the encoder is put, in eval mode.

    Returns
    -------
    TrainedModel

    Raises
    ------
    ModelFileError
        Missing, corrupt, foreign or incompatible file, in one line.

    Examples
    --------
    >>> model = load_model("retina.safetensors")  # doctest: +SKIP
    >>> model.channels, model.embed_dim  # doctest: +SKIP
    (3, 128)
    """
    path = Path(path)
    if path.suffix.lower() == ".json" and path.with_suffix(".safetensors").is_file():
        path = path.with_suffix(".safetensors")  # the user picked the card: load the weights next to it
    data = _read_bytes(path)
    card = _card_from_header(path, _read_header(path, data))
    try:
        tensors = st_load(data)
    except Exception as exc:  # safetensors raises SafetensorError (not a public class in every version)
        why = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ModelFileError(f"{path.name} is corrupt or truncated ({why})") from None
    head_tensors = {k[len(CLUSTER_HEAD_PREFIX) :]: v for k, v in tensors.items() if k.startswith(CLUSTER_HEAD_PREFIX)}
    encoder_tensors = {k: v for k, v in tensors.items() if not k.startswith(CLUSTER_HEAD_PREFIX)}
    try:
        encoder = CUTSEncoder(int(card["channels"]), int(card["embed_dim"]))
        encoder.load_state_dict(encoder_tensors, strict=True)
    except (RuntimeError, ValueError, TypeError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ModelFileError(f"{path.name}: weights do not match the CUTS encoder ({first})") from None
    cluster_head = _load_cluster_head(path, card, head_tensors)
    if not all(torch.isfinite(t).all() for t in tensors.values() if t.is_floating_point()):
        raise ModelFileError(f"{path.name}: the weights contain NaN or infinity (training diverged?)")
    encoder.eval()
    encoder.to(resolve_device(device))
    if cluster_head is not None:
        cluster_head.to(resolve_device(device))
    return TrainedModel(encoder=encoder, card=card, cluster_head=cluster_head)


def _load_cluster_head(path: Path, card: dict[str, Any], tensors: dict[str, torch.Tensor]) -> Optional[torch.nn.Module]:
    """The cluster head stored beside the encoder, or None; the card and the tensors must agree."""
    entry = card.get("cluster_head")
    if entry is None and not tensors:
        return None
    if entry is None or not tensors:
        raise ModelFileError(f"{path.name}: the cluster head's card entry and its weights do not match")
    try:
        head = ClusterHead(int(card["embed_dim"]), int(entry["n_clusters"]))
        head.load_state_dict(tensors, strict=True)
    except (RuntimeError, ValueError, TypeError, KeyError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ModelFileError(f"{path.name}: the cluster head's weights do not match its card ({first})") from None
    return head.eval()


def _describe_channels(n: int) -> str:
    return {1: "1 channel (grey)", 3: "3 channels (RGB)"}.get(n, f"{n} channels")


def _describe_input(n: int, names: Sequence[str], kind: str = "") -> str:
    """Say "2 sequences (flair.nii.gz, t1c.nii.gz)" when each channel is a named sequence, else the channel kind."""
    if n > 1 and len(names) == n:
        return f"{n} sequences ({', '.join(names)})"
    return kind + _describe_channels(n)


def check_compatible(model: TrainedModel, image: ImageData) -> None:
    """Raise `ModelFileError` when the image cannot be fed to this model (channel count differs).

    The message names the sequences the model was trained on (card "sequences", absent from older cards)
    and those given, so a missing or extra sequence is plain.
    """
    if model.channels != image.channels:
        trained_on = model.card.get("sequences")
        trained_on = [str(n) for n in trained_on] if isinstance(trained_on, list) else []
        given = sequence_names(image)
        name = describe_sequences(image)
        how = (
            f"give {model.channels} sequences in the same order"
            if len(trained_on) == model.channels > 1
            else "train a model on images like this one or pick a matching model"
        )
        raise ModelFileError(
            f"the model was trained on {_describe_input(model.channels, trained_on, 'images with ')} but {name} has "
            f"{_describe_input(image.channels, given)}; {how}"
        )
    entry = model.card.get("normalisation")
    mode = entry.get("mode") if isinstance(entry, dict) else entry
    if mode is not None and mode not in ("uint8", "percentile"):
        raise ModelFileError(f"the model uses an unknown normalisation {mode!r}; update the extension")
