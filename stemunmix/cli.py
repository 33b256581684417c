"""The ``stemunmix`` command: ``demo``, ``analyze FILE`` and ``train``."""

from __future__ import annotations

import argparse
import sys
import time
import warnings
from pathlib import Path

FORMATS = "dm3, dm4, emd, tif, hspy, zspy or any other format hs.load reads"


class UserError(Exception):
    """A problem with the user's input, reported as one sentence."""


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


def _report(result, out: Path, title: str, t0: float, lazy: bool = False) -> None:
    from stemunmix.report import save_results, write_report

    page = write_report(result, out, title=title)
    saved = save_results(result, out, lazy=lazy)
    print(f"report: {page}")
    print(f"results: {', '.join(str(p) for p in saved)}")
    print(f"total time {time.perf_counter() - t0:.1f} s")


def _demo(args) -> int:
    from stemunmix.report import analyze
    from stemunmix.synthetic import perovskite

    t0 = time.perf_counter()
    image, truth = perovskite(shape=args.size, domains="four_stripes", seed=args.seed)
    print(f"synthetic La-BiFeO3-like image, {args.size} x {args.size} px, "
          "four stripe domains")  # fmt: skip
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        result = analyze(image, window=args.window, method=args.method,
                         components=args.components, domains=4, truth=truth,
                         show_progressbar=True)  # fmt: skip
    _report(result, Path(args.out), "stemunmix demo: four stripe domains", t0)
    return 0


# Above this size a non-zarr file is not shipped to a dask cluster in the graph.
SHIP_LIMIT = 2**31


def _load(path: str, lazy: bool, distributed: bool = False):
    """Load the first image in ``path``. For a dask cluster (``distributed``)
    only zarr (.zspy) data is read lazily by the workers: HDF5 handles cannot
    travel to other processes, so other files are read here and sent to the
    workers with the graph, up to ``SHIP_LIMIT`` bytes."""
    import hyperspy.api as hs

    p = Path(path)
    if not p.exists():
        raise UserError(f"cannot read {path}: no such file")
    zarr = p.suffix.lower() == ".zspy"
    if distributed and not zarr:
        lazy = False
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            try:
                signal = hs.load(p, lazy=lazy)
            except Exception:
                if p.suffix.lower() not in (".h5", ".hdf5"):
                    raise
                signal = hs.load(p, lazy=lazy, file_format="HSPY")
    except Exception as exc:  # any reader failure is the file's problem
        reason = (
            str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        )
        raise UserError(
            f"cannot read {path} ({reason}); give a {FORMATS} file"
        ) from exc
    signals = signal if isinstance(signal, list) else [signal]
    images = [s for s in signals if s.axes_manager.signal_dimension == 2]
    if not images:
        dims = sorted({s.axes_manager.signal_dimension for s in signals})
        raise UserError(
            f"{path} holds no image (signal dimension {dims}); stemunmix needs a "
            "2D atomic-resolution image such as a HAADF frame"
        )
    image = images[0]
    if distributed and not zarr:
        if image.data.nbytes > SHIP_LIMIT:
            raise UserError(
                f"{path} is too large ({image.data.nbytes / 2**30:.1f} GiB) to send "
                "to the dask workers; save it as .zspy where the workers can read it "
                "(hs.load(FILE, lazy=True).save('FILE.zspy')) and analyze that"
            )
        image = image.as_lazy()
    return image


def _analyze(args) -> int:
    from stemunmix.report import analyze

    t0 = time.perf_counter()
    lazy = args.lazy or args.scheduler is not None
    client = None
    if args.scheduler is not None:
        from dask.distributed import Client

        try:
            client = Client(args.scheduler, timeout="20s")
        except Exception as exc:
            raise UserError(
                f"cannot reach the dask scheduler at {args.scheduler} ({exc}); "
                "check the address (e.g. tcp://host:8786)"
            ) from exc
    try:
        image = _load(args.file, lazy, distributed=client is not None)
        print(f"{args.file}: {image}")
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            try:
                result = analyze(image, window=args.window, method=args.method,
                                 components=args.components, domains=args.domains,
                                 classes=None if args.classes == "all" else args.classes,
                                 scree=not args.no_scree, show_progressbar=True,
                                 store=Path(args.out) if lazy else None)  # fmt: skip
            except ValueError as exc:
                if "no lattice" in str(exc) or "too small" in str(exc):
                    raise UserError(
                        f"{args.file} shows no lattice of atomic columns stemunmix "
                        "can use; give an atomic-resolution image with at least a "
                        "few unit cells"
                    ) from exc
                raise
        _report(result, Path(args.out), f"stemunmix analysis of {Path(args.file).name}",
                t0, lazy=lazy)  # fmt: skip
    finally:
        if client is not None:
            client.close()
    return 0


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="stemunmix", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    demo = sub.add_parser("demo", help="the whole analysis on a synthetic image")
    demo.add_argument("--out", default="stemunmix-demo", help="report folder")
    demo.add_argument("--size", type=int, default=512)
    demo.add_argument("--window", type=int, default=24)
    demo.add_argument("--method", choices=("nmf", "pca", "ica", "gmm"), default="nmf")
    demo.add_argument("--components", type=int, default=4)
    demo.add_argument("--seed", type=int, default=0)
    demo.set_defaults(run=_demo)
    an = sub.add_parser("analyze", help="the whole analysis on your image file")
    an.add_argument("file", help=f"an image file ({FORMATS})")
    an.add_argument("--window", type=int, default=None,
                    help="window size in pixels (default 1.2 x the column spacing)")  # fmt: skip
    an.add_argument("--method", choices=("nmf", "pca", "ica", "gmm"), default="nmf")
    an.add_argument("--components", type=int, default=4)
    an.add_argument("--domains", type=int, default=None,
                    help="number of domains to cluster (default: components)")  # fmt: skip
    an.add_argument("--classes", default="B",
                    help="column class the windows centre on, or 'all' (default B)")  # fmt: skip
    an.add_argument("--out", default="stemunmix-report", help="report folder")
    an.add_argument("--lazy", action="store_true",
                    help="load lazily and keep the data out of memory (saves .zspy)")  # fmt: skip
    an.add_argument("--scheduler", default=None,
                    help="address of a dask scheduler to compute on (implies --lazy)")  # fmt: skip
    an.add_argument("--no-scree", action="store_true",
                    help="skip the explained variance against window size")  # fmt: skip
    an.set_defaults(run=_analyze)
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
    except (UserError, ValueError, TypeError, OSError) as exc:
        print(f"stemunmix {args.command}: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
