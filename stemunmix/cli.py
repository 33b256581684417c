"""The ``stemunmix`` command: ``demo``, ``train`` (``analyze`` lands with the
"user's door" issue)."""

from __future__ import annotations

import argparse
import sys
import time


def _train(args) -> int:
    import stemunmix

    model = stemunmix.train(
        out=args.out, steps=args.steps, batch_size=args.batch_size,
        seed=args.seed, device=args.device,
    )  # fmt: skip
    print(
        f"model written to {args.out}/model.pt; validation: {model.card['validation']}"
    )
    return 0


def _demo(args) -> int:
    import warnings

    from scipy.spatial import cKDTree
    from sklearn.metrics import adjusted_rand_score

    from stemunmix.learn import GaussianMixture
    from stemunmix.synthetic import perovskite

    t0 = time.perf_counter()
    image, truth = perovskite(shape=args.size, domains="four_stripes", seed=args.seed)
    print(f"synthetic La-BiFeO3-like image {image.data.shape}, four stripe domains")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        columns = image.find_columns()
        ld = image.local_descriptors(args.window, classes="B")
    print(f"columns: {columns}")
    ld.decomposition(
        algorithm="NMF", output_dimension=args.components, print_info=False
    )
    ld.cluster_analysis("decomposition", number_of_components=args.components,
                        algorithm=GaussianMixture(4, random_state=0))  # fmt: skip
    labels = ld.learning_results.cluster_labels.argmax(0)
    _, idx = cKDTree(truth.columns.select("B").xy).query(ld.columns.xy)
    truth_labels = truth.domain[truth.columns.labels == 1][idx]
    ari = adjusted_rand_score(truth_labels, labels)
    print(f"NMF ({args.components} components) + Gaussian mixture: domains found with "
          f"adjusted Rand index {ari:.3f} against the truth")  # fmt: skip
    print(f"total time {time.perf_counter() - t0:.1f} s")
    return 0


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="stemunmix", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    demo = sub.add_parser("demo", help="the whole analysis on a synthetic image")
    demo.add_argument("--size", type=int, default=512)
    demo.add_argument("--window", type=int, default=24)
    demo.add_argument("--components", type=int, default=4)
    demo.add_argument("--seed", type=int, default=0)
    demo.set_defaults(run=_demo)
    train = sub.add_parser("train", help="train a segmentation model")
    train.add_argument("--out", default="stemunmix-model")
    train.add_argument("--steps", type=int, default=4000)
    train.add_argument("--batch-size", type=int, default=8)
    train.add_argument("--seed", type=int, default=0)
    train.add_argument("--device", default=None)
    train.set_defaults(run=_train)
    args = parser.parse_args(argv)
    try:
        return args.run(args)
    except (ValueError, TypeError, OSError) as exc:
        print(f"stemunmix {args.command}: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
