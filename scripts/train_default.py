"""Regenerate the bundled default segmentation model from its recipe.

    python scripts/train_default.py [--steps 5000] [--device cuda]

Writes runs/default/{checkpoint.pt,model.pt,log.json}, then copies the model to
stemunmix/models/default.pt and its model card to stemunmix/models/default.json.
The recipe is stemunmix.train with the arguments below; same seed and device, same
weights.
"""

import argparse
import json

import stemunmix
from stemunmix.nn.model_io import MODELS_DIR, save_model

RECIPE = dict(steps=5000, batch_size=8, patch_size=128, learning_rate=3e-3, seed=0)


def regenerate(
    name: str, recipe: dict, doc: str, contrast: str, structures=("perovskite",)
) -> None:
    """Train the bundled model ``name`` from ``recipe`` (``--steps``,
    ``--device`` and ``--out`` from the command line) and copy it and its
    card into stemunmix/models, the card naming the ``contrast`` segment()
    picks it for (the model registry, nn/model_io.registry)."""
    parser = argparse.ArgumentParser(description=doc.splitlines()[0])
    parser.add_argument("--steps", type=int, default=recipe["steps"])
    parser.add_argument("--device", default=None)
    parser.add_argument("--out", default=f"runs/{name}")
    args = parser.parse_args()
    model = stemunmix.train(out=args.out, device=args.device,
                            **(recipe | {"steps": args.steps}))  # fmt: skip
    MODELS_DIR.mkdir(exist_ok=True)
    model.card["structures"] = list(structures)  # the weights' card says it too
    save_model(model, MODELS_DIR / f"{name}.pt", model.card)
    card = dict(model.card, name=name, contrast=contrast)
    (MODELS_DIR / f"{name}.json").write_text(json.dumps(card, indent=1) + "\n")
    print(json.dumps(card["validation"], indent=1))


if __name__ == "__main__":
    regenerate("default", RECIPE, __doc__, "bright")
