"""The training recipe of the segmentation network.

Seeded and deterministic for a given seed and device: every batch is drawn from a
numpy generator seeded once, torch is seeded, and the validation set is fixed.
"""

from __future__ import annotations

import json
import platform
import time
from pathlib import Path

import numpy as np
import torch
from torch.nn import functional as F

import stemunmix.nn.data as data
from stemunmix.nn.model_io import TRAINING_SPACING, save_model
from stemunmix.nn.unet import DilatedUNet

CLASS_WEIGHTS = (3.0, 3.0, 1.0)  # columns are a few % of the pixels
OXYGEN_CLASSES = ("A", "B", "O", "background")
OXYGEN_WEIGHTS = (3.0, 3.0, 3.0, 1.0)
MONATOMIC_CLASSES = ("column", "background")
MONATOMIC_WEIGHTS = (3.0, 1.0)
STRUCTURES_TRAINED = ("perovskite", "one species", "2D")


def resolve_device(device) -> torch.device:
    """``None``: CUDA when present, else the CPU. Unavailable devices are refused."""
    if device is None:
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError) as exc:
        raise ValueError(f"device {device!r} is not a torch device: {exc}") from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(
            f"device {device!r} is not available on this machine (no CUDA); "
            "use device='cpu' or leave device=None"
        )
    if dev.type not in ("cpu", "cuda"):
        raise ValueError(f"device {device!r}: only 'cpu' and 'cuda' are supported")
    return dev


def validation_set(
    seed: int, n: int, size: int, oxygen: bool = False, structure="perovskite"
):
    rng = np.random.default_rng([seed, 1])
    if structure in data.MONATOMIC_SHARES:
        share = data.MONATOMIC_SHARES[structure]
        return [
            data.monatomic_sample(rng, size, truth=True, two_d=share) for _ in range(n)
        ]
    return [data.random_sample(rng, size, truth=True, oxygen=oxygen) for _ in range(n)]


def class_names(recipe: dict) -> tuple:
    """The classes a recipe trains."""
    if recipe.get("structure") in data.MONATOMIC_SHARES:
        return MONATOMIC_CLASSES
    return OXYGEN_CLASSES if recipe.get("oxygen") else ("A", "B", "background")


@torch.no_grad()
def evaluate(model, samples, device) -> dict:
    """Column accuracy (argmax right at true column centres) and pixel accuracy."""
    model.eval()
    right, total, pix_right, pix_total = 0, 0, 0, 0
    for image, labels, xy, sub in samples:
        x = torch.from_numpy(image)[None, None].to(device)
        pred = model(x).argmax(1)[0].cpu().numpy()
        ij = np.round(xy).astype(int)
        ok = (ij[:, 0] >= 0) & (ij[:, 1] >= 0)
        ok &= (ij[:, 0] < image.shape[1]) & (ij[:, 1] < image.shape[0])
        right += int((pred[ij[ok, 1], ij[ok, 0]] == sub[ok]).sum())
        total += int(ok.sum())
        pix_right += int((pred == labels).sum())
        pix_total += labels.size
    model.train()
    return {"column_accuracy": right / total, "pixel_accuracy": pix_right / pix_total}


def train(
    out=None,
    steps: int = 3000,
    batch_size: int = 8,
    patch_size: int = 128,
    learning_rate: float = 3e-3,
    seed: int = 0,
    device=None,
    validation_size: int = 24,
    checkpoint_every: int = 500,
    widths=(16, 32, 64),
    bottleneck: int = 128,
    rates=(2, 4, 6),
    show_progressbar: bool | None = None,
    oxygen: bool = False,
    init=None,
    structure: str = "perovskite",
) -> DilatedUNet:
    """Train a segmentation model on on-the-fly synthetic images.

    Parameters
    ----------
    out : path, optional
        Folder for checkpoints (``checkpoint.pt``), the final ``model.pt`` and
        ``log.json``. Nothing is written when None.
    steps, batch_size, patch_size, learning_rate
        AdamW with a cosine-decayed learning rate on ``patch_size``-pixel images.
    seed : int
        Seeds the data stream, the initial weights and the validation set.
    device : str, optional
        ``None`` uses CUDA when present, else the CPU.
    widths, bottleneck, rates
        Network shape (see :class:`stemunmix.nn.DilatedUNet`).
    oxygen : bool
        Train the classes A, B, O, background on images of every contrast
        (:func:`stemunmix.nn.data.oxygen_contrast`) instead of A, B,
        background on HAADF.
    init : str or path, optional
        Start from this model's weights (a bundled name or a file; same network
        shape): the classes it shares keep their output channel, a new class
        (O) starts from the A channel.
    structure : {"perovskite", "one species", "2D"}
        ``"one species"``: the classes column, background on crystals of one
        species and [110] dumbbells (:func:`stemunmix.nn.data.monatomic_sample`:
        square, centred rectangle, triangular and honeycomb projections,
        particles on vacuum or an amorphous film, twins) instead of the
        perovskites; ``"2D"``: the same with 2D honeycombs of two sublattices
        in ``TWO_D_SHARE`` of the images.

    Returns
    -------
    DilatedUNet in eval mode, with ``.card`` (recipe and validation scores).
    """
    from stemunmix.core import checks

    checks.one_of("structure", structure, STRUCTURES_TRAINED)
    if oxygen and structure != "perovskite":
        raise ValueError(
            "oxygen=True trains the perovskite's O columns: use it with "
            "structure='perovskite'"
        )
    _check_train(
        steps,
        batch_size,
        validation_size,
        checkpoint_every,
        seed,
        patch_size,
        learning_rate,
    )
    dev = resolve_device(device)
    if out is not None:
        out = Path(out)
        if out.exists() and not out.is_dir():
            raise ValueError(
                f"out = {str(out)!r} is a file; give a folder for the model"
            )
    class_weights = OXYGEN_WEIGHTS if oxygen else CLASS_WEIGHTS
    if structure in data.MONATOMIC_SHARES:
        class_weights = MONATOMIC_WEIGHTS
    recipe = dict(
        steps=steps,
        batch_size=batch_size,
        patch_size=patch_size,
        learning_rate=learning_rate,
        seed=seed,
        validation_size=validation_size,
        widths=list(widths),
        bottleneck=bottleneck,
        rates=list(rates),
        class_weights=list(class_weights),
        training_spacing=TRAINING_SPACING,
    )
    if oxygen:
        recipe["oxygen"] = True
    if structure != "perovskite":
        recipe["structure"] = structure
    names = class_names(recipe)
    torch.manual_seed(seed)
    model = DilatedUNet(names, widths, bottleneck, rates)
    if init is not None:
        recipe["init"] = _start_from(model, init)
    model = model.to(dev)
    if out is not None:
        out.mkdir(parents=True, exist_ok=True)
    disable = None if show_progressbar is None else not show_progressbar
    log = _fit(model, recipe, dev, out, checkpoint_every, disable)
    model.eval()
    model.card = _card(recipe, log, dev)
    if out is not None:
        save_model(model, out / "model.pt", model.card)
    return model


def _check_train(
    steps,
    batch_size,
    validation_size,
    checkpoint_every,
    seed,
    patch_size,
    learning_rate,
) -> None:
    """train()'s numbers, before any work."""
    from stemunmix.core import checks

    for name, value in (
        ("steps", steps),
        ("batch_size", batch_size),
        ("validation_size", validation_size),
        ("checkpoint_every", checkpoint_every),
    ):
        checks.count(name, value)
    checks.count("seed", seed, 0)
    checks.count("patch_size", patch_size, 32)
    if patch_size % 8:
        raise ValueError(f"patch_size must be a multiple of 8, >= 32, got {patch_size}")
    checks.real("learning_rate", learning_rate, 0, 1, low_open=True)


def _fit(model, recipe, dev, out, checkpoint_every, disable) -> list:
    """The training loop of :func:`train`: AdamW, one-cycle schedule, a
    checkpoint with its validation scores every ``checkpoint_every`` steps
    (the weights written first), the finished steps kept on interruption.
    Returns the log."""
    from tqdm.auto import tqdm

    steps, oxygen = recipe["steps"], recipe.get("oxygen", False)
    structure = recipe.get("structure", "perovskite")
    rng = np.random.default_rng([recipe["seed"], 0])
    optimiser = torch.optim.AdamW(model.parameters(), lr=recipe["learning_rate"])
    schedule = torch.optim.lr_scheduler.OneCycleLR(
        optimiser, max_lr=recipe["learning_rate"], total_steps=steps, pct_start=0.1
    )
    weights = torch.tensor(recipe["class_weights"], device=dev)
    val = validation_set(
        recipe["seed"],
        recipe["validation_size"],
        recipe["patch_size"],
        oxygen,
        structure,
    )
    log, t0 = [], time.perf_counter()
    model.train()
    step = 0
    try:
        for step in tqdm(range(1, steps + 1), desc="training", disable=disable):
            loss = _step(
                model,
                optimiser,
                schedule,
                weights,
                rng,
                recipe["batch_size"],
                recipe["patch_size"],
                dev,
                oxygen,
                structure,
            )
            if step % checkpoint_every == 0 or step == steps:
                _checkpoint(model, recipe, log, step, loss, t0, val, dev, out)
    except BaseException:
        # Interrupted or failed: keep the finished steps beside the last
        # checkpoint, then let the error through.
        if out is not None and step > 0:
            log.append({"step": step, "interrupted": True})
            save_model(model, out / "interrupted.pt", _card(recipe, log, dev))
            (out / "log.json").write_text(json.dumps(log, indent=1))
        raise
    return log


def _checkpoint(model, recipe, log, step, loss, t0, val, dev, out) -> None:
    """One checkpoint: the weights first (nothing after can lose them), then
    the validation scores into ``log`` and, with ``out``, onto disk."""
    entry = {"step": step, "loss": loss, "seconds": time.perf_counter() - t0}
    if out is not None:
        model.card = _card(recipe, log + [entry], dev)
        save_model(model, out / "checkpoint.pt", model.card)
    log.append(entry | evaluate(model, val, dev))
    if out is not None:
        model.card = _card(recipe, log, dev)
        save_model(model, out / "checkpoint.pt", model.card)
        (out / "log.json").write_text(json.dumps(log, indent=1))


def _start_from(model, init) -> str:
    """Copy the weights of model ``init`` into ``model`` (same shape); the head
    keeps the channels of shared classes, and a new class starts from A's.
    Returns the name recorded in the recipe."""
    from stemunmix.nn.model_io import load_model

    try:
        source = load_model(init)
    except (TypeError, ValueError) as exc:
        raise type(exc)(f"init: {exc}") from None
    if source.config["widths"] != model.config["widths"] or (
        source.config["bottleneck"] != model.config["bottleneck"]
        or source.config["rates"] != model.config["rates"]
    ):
        raise ValueError(
            f"init={init!r} has another network shape ({source.config}); "
            "start from a model with the same widths, bottleneck and rates"
        )
    state = {k: v for k, v in source.state_dict().items() if not k.startswith("head.")}
    model.load_state_dict(state, strict=False)
    old = list(source.class_names)
    with torch.no_grad():
        for k, name in enumerate(model.class_names):
            j = old.index(name) if name in old else old.index("A")
            model.head.weight[k] = source.head.weight[j]
            model.head.bias[k] = source.head.bias[j]
    return str(source.card.get("name", init))


def _step(
    model,
    optimiser,
    schedule,
    weights,
    rng,
    batch_size,
    patch_size,
    dev,
    oxygen=False,
    structure="perovskite",
):
    """One optimiser step on a fresh batch; returns the loss."""
    images, labels = data.batch(rng, batch_size, patch_size, oxygen, structure)
    # Random flips and quarter turns; the generator already covers rotations.
    k = int(rng.integers(4))
    images, labels = np.rot90(images, k, (2, 3)), np.rot90(labels, k, (1, 2))
    x = torch.from_numpy(np.ascontiguousarray(images)).to(dev)
    y = torch.from_numpy(np.ascontiguousarray(labels)).to(dev)
    loss = F.cross_entropy(model(x), y, weight=weights)
    optimiser.zero_grad()
    loss.backward()
    optimiser.step()
    schedule.step()
    return loss.item()


def _card(recipe, log, device) -> dict:
    from stemunmix import __version__

    return {
        "version": __version__,
        "class_names": list(class_names(recipe)),
        "structures": [recipe.get("structure", "perovskite")],
        "training_spacing": TRAINING_SPACING,
        "recipe": recipe,
        "validation": log[-1] if log else {},
        "trained_on": f"{device.type} ({platform.machine()}), torch {torch.__version__}",
    }
