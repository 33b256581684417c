"""Regenerate the bundled one-species model from its recipe.

    python scripts/train_one_species.py [--steps 3000] [--device cuda]

The model ``segment(structure="one species")`` uses: classes column and
background, trained on crystals of one species (fcc, bcc in [100] and [110],
fcc [111], hcp [0001]) and on [110] dumbbells (diamond, zincblende)
(:func:`stemunmix.nn.data.monatomic_sample`), filling the frame or as
particles on vacuum or on an amorphous film, some twinned. It
starts from the bundled default model's weights (the column channel from A).
Writes runs/one_species/{checkpoint.pt,model.pt,log.json}, then copies the
model to stemunmix/models/one_species.pt and its card to
stemunmix/models/one_species.json. Same seed and device, same weights.
"""

from train_default import regenerate

RECIPE = dict(steps=3000, batch_size=8, patch_size=128, learning_rate=3e-3, seed=0,
              structure="one species", init="default")  # fmt: skip

if __name__ == "__main__":
    regenerate("one_species", RECIPE, __doc__, "bright", ("one species", "dumbbell"))
