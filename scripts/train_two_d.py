"""Regenerate the bundled 2D model from its recipe.

    python scripts/train_two_d.py [--steps 3000] [--device cuda]

The model ``segment(structure="2D")`` uses: the one-species model's images
(scripts/train_one_species.py) with 2D honeycombs of two sublattices (MoS2:
one 0.2-1 of the other's height) in 15 % of them
(:data:`stemunmix.nn.data.TWO_D_SHARE`). Kept apart from the one-species
model, which it would cost columns on particles (measured: the real
nanoparticles and the particles on a film, BENCHMARKS.md). Writes
runs/two_d/{checkpoint.pt,model.pt,log.json}, then the model and its card to
stemunmix/models/two_d.{pt,json}. Same seed and device, same weights.
"""

from train_default import regenerate

RECIPE = dict(steps=3000, batch_size=8, patch_size=128, learning_rate=3e-3, seed=0,
              structure="2D", init="default")  # fmt: skip

if __name__ == "__main__":
    regenerate("two_d", RECIPE, __doc__, "bright", ("2D",))
