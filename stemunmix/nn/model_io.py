"""Saving and loading segmentation models: weights are data, never code.

A model file is a ``torch.save`` of a plain dict (format tag, network config,
state dict, model card) and is read with ``torch.load(weights_only=True)``, so a
file that holds anything else is refused without executing it.
"""

from __future__ import annotations

import copy
import json
from pathlib import Path

import torch

from stemunmix.nn.unet import DilatedUNet

# Pixels between nearest equivalent columns in the bundled models' training
# images (a card without "training_spacing" was trained at it).
TRAINING_SPACING = 16.0


def training_spacing(model) -> float:
    """The column spacing (pixels) ``model`` was trained at, from its card."""
    return float(model.card.get("training_spacing", TRAINING_SPACING))


FORMAT = "stemunmix-segmentation-model"
FORMAT_VERSION = 1
MODELS_DIR = Path(__file__).resolve().parents[1] / "models"
DEFAULT_NAME = "default"


def save_model(model: DilatedUNet, path, card: dict | None = None) -> Path:
    """Write ``model`` and its model card to ``path`` (.pt); returns the path."""
    if not isinstance(model, DilatedUNet):
        raise TypeError(f"model must be a DilatedUNet, got {type(model).__name__}")
    path = Path(path)
    card = dict(card or {})
    card.setdefault("class_names", model.class_names)
    # JSON round trip: the card holds only plain values weights_only can load.
    card = json.loads(json.dumps(card))
    state = {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}
    torch.save(
        {
            "format": FORMAT,
            "format_version": FORMAT_VERSION,
            "config": model.config,
            "state_dict": state,
            "card": card,
        },
        path,
    )
    return path


def _resolve(name_or_path) -> Path:
    if name_or_path is None:
        name_or_path = DEFAULT_NAME
    if isinstance(name_or_path, (str, Path)):
        candidate = MODELS_DIR / f"{name_or_path}.pt"
        if isinstance(name_or_path, str) and candidate.is_file():
            return candidate
        path = Path(name_or_path)
        if path.is_file():
            return path
        bundled = sorted(p.stem for p in MODELS_DIR.glob("*.pt"))
        raise ValueError(
            f"name_or_path {str(name_or_path)!r} is neither a bundled model "
            f"({bundled}) nor an existing file; pass a path written by "
            "stemunmix.train or save_model"
        )
    raise TypeError(
        f"name_or_path must be a model name or a path, got {type(name_or_path).__name__}"
    )


def load_model(name_or_path=None) -> DilatedUNet:
    """The bundled default model, or one saved by :func:`stemunmix.train`.

    Returns a ``torch.nn.Module`` in eval mode with ``.class_names`` and ``.card``
    (its model card). Loaded with ``torch.load(weights_only=True)``.
    """
    path = _resolve(name_or_path)
    blob = _read(path)
    if not isinstance(blob, dict) or blob.get("format") != FORMAT:
        raise ValueError(
            f"{path} is not a stemunmix model file (no {FORMAT!r} tag); save "
            "models with stemunmix.nn.save_model or stemunmix.train"
        )
    if blob.get("format_version", 0) > FORMAT_VERSION:
        raise ValueError(
            f"{path} was written by a newer stemunmix (format version "
            f"{blob['format_version']}); upgrade stemunmix to read it"
        )
    try:
        model = DilatedUNet(**blob["config"])
        model.load_state_dict(blob["state_dict"])
    except (KeyError, TypeError, RuntimeError) as exc:
        raise ValueError(
            f"{path}: weights do not fit the stored network: {exc}"
        ) from None
    card = blob.get("card", {})
    if not isinstance(card, dict):
        raise ValueError(
            f"{path}: the model card is not a dictionary; re-save the model"
        )
    _check_card(path, card, model)
    model.card = copy.deepcopy(card)  # the read file's own stays as read
    model.card.setdefault("name", path.stem)
    model.eval()
    return model


def _shared(name_or_path):
    """:func:`load_model` of a name or path, once per state of its file."""
    path = _resolve(name_or_path)
    key = _file_key(path)
    if key not in _SHARED:
        _SHARED[key] = load_model(path)
    return _SHARED[key]


_SHARED: dict = {}  # check_model's networks: (path, mtime, size) -> model

# Files read in this process: (path, modification time, size) -> contents.
# Each load_model call builds a fresh network from them (nothing shared to
# mutate); a file rewritten on disk is read again.
_READ: dict = {}


def _file_key(path: Path) -> tuple:
    """(path, modification time, size): a file's state, as the caches key it."""
    stat = path.stat()
    return (str(path.resolve()), stat.st_mtime_ns, stat.st_size)


def _read(path: Path) -> dict:
    key = _file_key(path)
    if key not in _READ:
        try:
            blob = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as exc:  # torch raises several types for foreign/corrupt files
            raise ValueError(
                f"{path} is not a readable stemunmix model file (corrupt, truncated, "
                f"or holding objects other than weights, which are refused): {exc}"
            ) from None
        _READ[key] = blob
    return _READ[key]


def bundled_card(name: str) -> dict:
    """The model card of a bundled model, read from its JSON beside the
    weights (no weights loaded): class names, contrast, training spacing,
    recipe (read once per process; a copy)."""
    path = MODELS_DIR / f"{name}.json"
    if not path.is_file():
        bundled = sorted(p.stem for p in MODELS_DIR.glob("*.json"))
        raise ValueError(f"no bundled model {name!r}; bundled: {bundled}")
    stat = path.stat()
    key = (str(path), stat.st_mtime_ns, stat.st_size)
    if key not in _CARDS:
        _CARDS[key] = json.loads(path.read_text())
    return copy.deepcopy(_CARDS[key])


_CARDS: dict = {}


def registry() -> dict:
    """The bundled models, read from their cards (no weights loaded):
    {name: {"class_names", "contrast", "training_spacing", "structures"}}.
    A model card's
    ``contrast`` ("bright": HAADF/ADF, "dark": ABF/BF) makes it the model
    ``segment`` uses for that contrast; a new contrast is a new model and
    card (scripts/train_default.py's ``regenerate``)."""
    out = {}
    for path in sorted(MODELS_DIR.glob("*.json")):
        card = bundled_card(path.stem)
        out[path.stem] = {
            "class_names": list(card["class_names"]),
            "contrast": card.get("contrast"),
            "training_spacing": float(card.get("training_spacing", TRAINING_SPACING)),
            "structures": list(card.get("structures", STRUCTURES_KNOWN)),
        }
    return out


# What a card that names none knows: the bundled models were trained on
# perovskites ([001] and [110]).
STRUCTURES_KNOWN = ("perovskite",)


def structures_of(model) -> list:
    """The structures ``model`` was trained on (its card's ``structures``;
    perovskites where the card names none)."""
    card = getattr(model, "card", None) or {}
    return list(card.get("structures", STRUCTURES_KNOWN))


def model_for_contrast(contrast: str, structure: str = "auto") -> str:
    """The bundled model for images of ``contrast`` (its card's
    ``contrast``) and ``structure`` (one of its card's ``structures``;
    ``"auto"``: the perovskites); the default model where two claim both."""
    wanted = STRUCTURES_KNOWN[0] if structure == "auto" else structure
    found = registry()
    names = [n for n, e in found.items() if e["contrast"] == contrast]
    if not names:
        known = sorted({e["contrast"] for e in found.values()} - {None})
        raise ValueError(
            f"contrast {contrast!r}: no bundled model is for it (the models' "
            f"cards name {known}); pass model= a model trained for it"
        )
    fits = [n for n in names if wanted in found[n]["structures"]]
    if not fits:
        known = sorted({s for n in names for s in found[n]["structures"]})
        raise ValueError(
            f"structure={structure!r}: no bundled model for {contrast} columns "
            f"knows it (they know {known}); pass model= one trained on it "
            "(stemunmix.train), or structure='auto'"
        )
    return DEFAULT_NAME if DEFAULT_NAME in fits else fits[0]


def _check_card(path, card: dict, model) -> None:
    """Refuse at load a card that contradicts its network or cannot be used."""
    names = card.get("class_names")
    if names is not None and list(names) != list(model.class_names):
        raise ValueError(
            f"{path}: the model card lists the classes {list(names)}, but the "
            f"network outputs {len(model.class_names)} ({list(model.class_names)}); "
            "the file is inconsistent: re-save it with save_model"
        )
    spacing = card.get("training_spacing", TRAINING_SPACING)
    if (
        isinstance(spacing, bool)
        or not isinstance(spacing, (int, float))
        or not 2 <= spacing <= 1000
    ):
        raise ValueError(
            f"{path}: the model card's training_spacing {spacing!r} is not a column "
            "spacing in pixels (2 to 1000); fix the card and re-save the model"
        )


def check_model(model):
    """The model protocol, checked in one place: what ``segment`` needs.

    A segmentation model is a ``torch.nn.Module`` taking one input channel
    (N, 1, H, W) and returning per-class logits (N, C, H, W) for H and W
    multiples of ``model.multiple``, with ``class_names`` (C names, one of
    them ``"background"``, at least one column class), ``receptive_field()``
    (pixels; sets the tiles' halo) and ``card`` (a dict; ``training_spacing``
    is the column spacing in pixels it was trained at, 16 if absent).
    ``model`` may also be a bundled name or a path, loaded by
    :func:`load_model` once per state of its file in this process (the same
    object every call, so segment() prepares it for inference once: it is
    never handed to the caller, who gets a fresh one from load_model); None
    is the bundled default.
    """
    from torch import nn

    if model is None or isinstance(model, str) or hasattr(model, "__fspath__"):
        model = _shared(model)
    if not isinstance(model, nn.Module) or not hasattr(model, "class_names"):
        raise TypeError(
            "model must be a name, a path or a model from stemunmix.load_model, "
            f"got {type(model).__name__}"
        )
    names = list(model.class_names)
    if "background" not in names or len(names) < 2:
        raise ValueError(
            f"model classes {names} do not fit: a segmentation model needs column "
            "classes and a 'background' class (e.g. ['A', 'B', 'background'])"
        )
    if getattr(model, "config", {}).get("in_channels", 1) != 1:
        raise ValueError("model must take one input channel (a single image)")
    for name in ("receptive_field", "multiple"):
        if not hasattr(model, name):
            raise TypeError(
                f"model lacks {name!r}: segment needs a stemunmix DilatedUNet or a "
                "module with class_names, receptive_field() and multiple"
            )
    if not isinstance(getattr(model, "card", None), dict):
        model.card = {}
    return model
