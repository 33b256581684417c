"""Does torch.compile speed the network up on this CPU? (diagnostic, #36)

    python benchmarks/network_compile.py

The bundled default model (prepared for inference as segment() does:
channels-last, eval) on one 1024^2 channels-last tile, eager against
``torch.compile(model, dynamic=False)`` (the default inductor backend), mean
of 3 calls after 2 warm-up calls each; the compile time (first compiled
call) and the largest difference of the logits.
"""

import time

import torch

from stemunmix.nn.inference import for_inference
from stemunmix.nn.model_io import load_model


def timed(model, x, repeats=3):
    t = time.perf_counter()
    for _ in range(repeats):
        y = model(x)
    return (time.perf_counter() - t) / repeats, y


def main():
    model = for_inference(load_model("default"))
    x = torch.randn(1, 1, 1024, 1024).contiguous(memory_format=torch.channels_last)
    with torch.no_grad():
        for _ in range(2):
            model(x)
        eager, y0 = timed(model, x)
        t = time.perf_counter()
        compiled = torch.compile(model, dynamic=False)
        compiled(x)
        first = time.perf_counter() - t
        compiled(x)
        fast, y1 = timed(compiled, x)
    print(
        f"1024^2 tile, {torch.get_num_threads()} threads: eager {eager:.3f} s, "
        f"compiled {fast:.3f} s ({eager / fast:.2f}x; compiling took {first:.0f} s), "
        f"max |logit difference| {float((y1 - y0).abs().max()):.1e}"
    )


if __name__ == "__main__":
    main()
