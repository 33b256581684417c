"""Regenerate the bundled oxygen model from its recipe.

    python scripts/train_oxygen.py [--steps 3000] [--device cuda]

The model of the classes A, B, O, background, for ABF, BF and iDPC images
(``segment`` chooses it for dark columns; ``model="oxygen"`` for iDPC). It
starts from the bundled default model's weights and trains on the oxygen
images of :func:`stemunmix.nn.data.oxygen_contrast` (HAADF with invisible O,
inverted ABF, iDPC; both projections; octahedral tilts). Writes
runs/oxygen/{checkpoint.pt,model.pt,log.json}, then copies the model to
stemunmix/models/oxygen.pt and its card to stemunmix/models/oxygen.json. Same
seed and device, same weights.
"""

import argparse
import json
import shutil
from pathlib import Path

import stemunmix
from stemunmix.nn.model_io import MODELS_DIR

RECIPE = dict(steps=3000, batch_size=8, patch_size=128, learning_rate=2e-3, seed=0,
              oxygen=True, init="default")  # fmt: skip


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=RECIPE["steps"])
    parser.add_argument("--device", default=None)
    parser.add_argument("--out", default="runs/oxygen")
    args = parser.parse_args()
    recipe = RECIPE | {"steps": args.steps}
    model = stemunmix.train(out=args.out, device=args.device, **recipe)
    MODELS_DIR.mkdir(exist_ok=True)
    shutil.copy(Path(args.out) / "model.pt", MODELS_DIR / "oxygen.pt")
    card = dict(model.card, name="oxygen")
    (MODELS_DIR / "oxygen.json").write_text(json.dumps(card, indent=1) + "\n")
    print(json.dumps(card["validation"], indent=1))


if __name__ == "__main__":
    main()
