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

from train_default import regenerate

RECIPE = dict(steps=3000, batch_size=8, patch_size=128, learning_rate=2e-3, seed=0,
              oxygen=True, init="default")  # fmt: skip

if __name__ == "__main__":
    regenerate("oxygen", RECIPE, __doc__, "dark")
