"""Regenerate the bundled default segmentation model from its recipe.

    python scripts/train_default.py [--steps 5000] [--device cuda]

Writes runs/default/{checkpoint.pt,model.pt,log.json}, then copies the model to
stemunmix/models/default.pt and its model card to stemunmix/models/default.json.
The recipe is stemunmix.train with the arguments below; same seed and device, same
weights.
"""

import argparse
import json
import shutil
from pathlib import Path

import stemunmix
from stemunmix.nn.model_io import MODELS_DIR

RECIPE = dict(steps=5000, batch_size=8, patch_size=128, learning_rate=3e-3, seed=0)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=RECIPE["steps"])
    parser.add_argument("--device", default=None)
    parser.add_argument("--out", default="runs/default")
    args = parser.parse_args()
    recipe = RECIPE | {"steps": args.steps}
    model = stemunmix.train(out=args.out, device=args.device, **recipe)
    MODELS_DIR.mkdir(exist_ok=True)
    shutil.copy(Path(args.out) / "model.pt", MODELS_DIR / "default.pt")
    card = dict(model.card, name="default")
    (MODELS_DIR / "default.json").write_text(json.dumps(card, indent=1) + "\n")
    print(json.dumps(card["validation"], indent=1))


if __name__ == "__main__":
    main()
