"""The ``stemunmix`` command: ``demo``, ``analyze FILE`` and ``train``."""

from __future__ import annotations

import argparse
import contextlib
import io
import sys
import time
import warnings
from pathlib import Path

FORMATS = "dm3, dm4, emd, tif, hspy, zspy or any other format hs.load reads"


class UserError(Exception):
    """A problem with the user's input, reported as one sentence."""


class _Parser(argparse.ArgumentParser):
    """Option errors as one sentence naming the option (no usage dump)."""

    def error(self, message):
        raise UserError(message)


def _integer(low: int, high: int | None = None):
    """An argparse type: an integer in [low, high]; argparse names the option."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(
                f"must be an integer, got {text!r}"
            ) from None
        if value < low or (high is not None and value > high):
            bound = f">= {low}" if high is None else f"from {low} to {high}"
            raise argparse.ArgumentTypeError(f"must be an integer {bound}, got {value}")
        return value

    return parse


def _positive_float(text: str) -> float:
    """An argparse type: a positive finite number; argparse names the option."""
    import math

    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a number, got {text!r}") from None
    if not (math.isfinite(value) and value > 0):
        raise argparse.ArgumentTypeError(f"must be a positive number, got {text}")
    return value


def _calibrate(args, image) -> None:
    """--pixel-size onto the image's axes (nm); without it, a hint where the
    file has no calibration."""
    axes = image.axes_manager.signal_axes
    if args.pixel_size is not None:
        for ax in axes:
            ax.scale, ax.units = args.pixel_size, "nm"
        return
    from stemunmix.core.checks import calibrated

    if not all(calibrated(ax) for ax in axes):
        print(
            f"{args.file} has no calibration (its pixels are "
            f"'{axes[0].scale} {axes[0].units}'): figures are in pixels; give "
            "--pixel-size NM for nm and pm"
        )


def _one_frame(args, image):
    """--frame K of a stack; a stack without it is refused, naming --frame."""
    import numpy as np

    nav = tuple(int(k) for k in image.axes_manager.navigation_shape)
    n = int(np.prod(nav)) if nav else 1
    if args.frame is None:
        if nav:
            raise UserError(
                f"{args.file} holds a stack of {n} frames (navigation shape {nav}); "
                f"stemunmix analyze takes one image: choose one with --frame K "
                f"(0 to {n - 1})"
            )
        return image
    if args.frame >= n:
        raise UserError(
            f"--frame {args.frame}: {args.file} holds {n} frame(s); use 0 to {n - 1}"
        )
    if not nav:
        return image
    index = np.unravel_index(args.frame, nav[::-1])[::-1]
    return image.inav[tuple(int(k) for k in index)]


def _check_against_image(args, image) -> None:
    """--window and --classes against the image and the model, before any work."""
    from stemunmix.nn.model_io import load_model

    h, w = image.axes_manager.signal_shape[::-1]
    if args.window is not None and args.window >= min(h, w):
        raise UserError(
            f"--window {args.window} does not fit in the image ({h} x {w} pixels); "
            "use about 1.2 column spacings, or leave --window out"
        )
    # --model, or both bundled models (segment chooses one by the contrast)
    models = [args.model] if args.model is not None else ["default", "oxygen"]
    try:
        names = sorted(
            {n for m in models for n in load_model(m).class_names if n != "background"}
        )
    except ValueError as exc:
        raise UserError(f"--model {args.model!r}: {exc}") from exc
    if args.classes != "all" and args.classes not in names:
        raise UserError(
            f"--classes {args.classes!r} is not a column class of the model; use one "
            f"of {names} or 'all'"
        )


def _train(args) -> int:
    import stemunmix

    model = stemunmix.train(
        out=args.out,
        steps=args.steps,
        batch_size=args.batch_size,
        seed=args.seed,
        device=args.device,
    )
    print(
        f"model written to {args.out}/model.pt; validation: {model.card['validation']}"
    )
    return 0


def _report(result, stage, title: str, lazy: bool = False) -> list[str]:
    """The report and the results into the staging folder; their names."""
    from stemunmix.report import save_results, write_report

    page = write_report(result, stage.path, title=title)
    saved = save_results(result, stage.path, lazy=lazy)
    return [page.name] + [p.name for p in saved]


def _written(out, names, t0: float) -> None:
    out = Path(out)
    print(f"report: {out / names[0]}")
    print(f"results: {', '.join(str(out / n) for n in names[1:])}")
    print(f"total time {time.perf_counter() - t0:.1f} s")


def _say_replaced(out, stage) -> None:
    if stage.replaced:
        print(
            f"--out {out}: replacing an earlier run's results "
            f"({', '.join(stage.replaced)}) once this run has written all of its own"
        )


def _demo(args) -> int:
    from stemunmix.report import analyze
    from stemunmix.report.folder import results_folder
    from stemunmix.synthetic import perovskite

    t0 = time.perf_counter()
    with results_folder(args.out) as stage:
        _say_replaced(args.out, stage)
        image, truth = perovskite(
            shape=args.size, domains="four_stripes", seed=args.seed
        )
        print(
            f"synthetic La-BiFeO3-like image, {args.size} x {args.size} px, "
            "four stripe domains"
        )
        result = analyze(image, truth=truth, **_unmixing(args))
        names = _report(result, stage, "stemunmix demo: four stripe domains")
    _written(args.out, names, t0)
    return 0


# Above this size a non-zarr file is not shipped to a dask cluster in the graph.
SHIP_LIMIT = 2**31


def _load(path: str, lazy: bool, distributed: bool = False):
    """Load the first image in ``path``. For a dask cluster (``distributed``)
    only zarr (.zspy) data is read lazily by the workers: HDF5 handles cannot
    travel to other processes, so other files are read here and sent to the
    workers with the graph, up to ``SHIP_LIMIT`` bytes."""
    import hyperspy.api as hs

    from stemunmix.report.folder import check_file

    p = Path(path)
    if not p.exists():
        raise UserError(f"cannot read {path}: no such file")
    check_file(p)
    zarr = p.suffix.lower() == ".zspy"
    if distributed and not zarr:
        lazy = False
    try:
        with warnings.catch_warnings():
            # the readers' own notes on the file's format, not stemunmix's
            warnings.filterwarnings("ignore", module="(hyperspy|rsciio|h5py|zarr)")
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
    from stemunmix.report.folder import results_folder

    t0 = time.perf_counter()
    with results_folder(args.out) as stage:
        _say_replaced(args.out, stage)
        names = _analyze_into(args, stage)
    _written(args.out, names, t0)
    return 0


def _analyze_into(args, stage) -> list[str]:
    from stemunmix.core.segmentation import NoLatticeError
    from stemunmix.report import analyze

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
        image = _one_frame(args, _load(args.file, lazy, distributed=client is not None))
        _check_against_image(args, image)
        _calibrate(args, image)
        print(f"{args.file}: {image}")
        try:
            result = analyze(
                image,
                classes=None if args.classes == "all" else args.classes,
                scree=not args.no_scree,
                model=args.model,
                structure=args.structure,
                precision=args.precision,
                store=stage.path if lazy else None,
                **_unmixing(args),
            )
        except NoLatticeError as exc:
            raise UserError(
                f"{args.file} shows no lattice of atomic columns stemunmix can use "
                f"({exc}); give an atomic-resolution image with at least a few unit "
                "cells"
            ) from exc
        return _report(
            result, stage, f"stemunmix analysis of {Path(args.file).name}", lazy=lazy
        )
    finally:
        if client is not None:
            client.close()


def _unmixing(args) -> dict:
    """analyze()'s arguments from the options demo and analyze share."""
    return {
        "window": args.window,
        "method": args.method,
        "components": args.components,
        "domains": args.domains,
        "show_progressbar": not args.quiet,
    }


def _unmixing_options(parser, window_type) -> None:
    """The options demo and analyze share: window, method, components, domains."""
    parser.add_argument(
        "--window",
        type=window_type,
        default=None,
        help="window size in pixels (default: chosen from the "
        "scree against window size)",
    )
    parser.add_argument(
        "--method",
        choices=("pca", "nmf", "ica", "gmm", "rvae"),
        default="pca",
        help="unmixing method (default pca; rvae: the rotation-invariant VAE, "
        "its components drawn as latent traversals)",
    )
    parser.add_argument(
        "--components",
        type=_integer(1, 50),
        default=None,
        help="number of components, 1 to 50 (default: parallel analysis)",
    )
    parser.add_argument(
        "--domains",
        type=_integer(1, 50),
        default=None,
        help="number of domains to cluster, 1 to 50 (default: the best silhouette)",
    )
    parser.add_argument(
        "--json",
        action="store_true",
        help="print summary.json to standard output (and nothing else there)",
    )
    parser.add_argument(
        "--quiet",
        action="store_true",
        help="no progress bars and no messages (warnings and errors still show)",
    )


def _parser() -> argparse.ArgumentParser:
    from stemunmix import __version__

    parser = _Parser(
        prog="stemunmix",
        description="Find the structural building blocks of a crystal in an "
        "atomic-resolution STEM image: segment the columns, cut a window around "
        "each, unmix the windows and map the domains. Commands: demo (a "
        "synthetic image), analyze FILE (your image), train (a segmentation "
        "model).",
        epilog="Examples: stemunmix demo --out demo-report; stemunmix analyze "
        "haadf.dm4 --out my-report; stemunmix analyze image.tif --pixel-size "
        "0.02. Run 'stemunmix COMMAND --help' for a command's options.",
    )
    parser.add_argument(
        "--version", action="version", version=f"stemunmix {__version__}"
    )
    sub = parser.add_subparsers(dest="command", required=True)
    _demo_command(sub)
    _analyze_command(sub)
    _train_command(sub)
    return parser


def _demo_command(sub) -> None:
    """``stemunmix demo`` and its options."""
    demo = sub.add_parser("demo", help="the whole analysis on a synthetic image")
    demo.add_argument("--out", default="stemunmix-demo", help="report folder")
    demo.add_argument(
        "--size",
        type=_integer(64, 8192),
        default=512,
        help="image size in pixels, 64 to 8192 (default 512)",
    )
    _unmixing_options(demo, _integer(3, 63))
    demo.add_argument(
        "--seed",
        type=_integer(0),
        default=0,
        help="seed of the synthetic image (default 0)",
    )
    demo.set_defaults(run=_demo)


def _analyze_command(sub) -> None:
    """``stemunmix analyze FILE`` and its options."""
    an = sub.add_parser("analyze", help="the whole analysis on your image file")
    an.add_argument("file", help=f"an image file ({FORMATS})")
    _unmixing_options(an, _integer(3))
    an.add_argument(
        "--classes",
        default="B",
        help="column class the windows centre on, or 'all' (default B)",
    )
    an.add_argument("--out", default="stemunmix-report", help="report folder")
    an.add_argument(
        "--frame",
        type=_integer(0),
        default=None,
        help="the frame of a stack to analyze (0 is the first; flat index for a "
        "stack of more than one navigation axis)",
    )
    an.add_argument(
        "--lazy",
        action="store_true",
        help="load lazily and keep the data out of memory (saves .zspy)",
    )
    an.add_argument(
        "--scheduler",
        default=None,
        help="address of a dask scheduler to compute on (implies --lazy)",
    )
    an.add_argument(
        "--no-scree",
        action="store_true",
        help="skip the explained variance against window size (the "
        "window is then half the column spacing)",
    )
    an.add_argument(
        "--model",
        default=None,
        help="segmentation model: a bundled name (default, oxygen) or a "
        "model file; default: chosen by the contrast (oxygen for "
        "dark-column ABF/BF images); oxygen for iDPC",
    )
    an.add_argument(
        "--structure",
        # segment()'s STRUCTURES, written out: importing the signals here
        # would add about 0.8 s to every command (a test keeps them equal)
        choices=("auto", "perovskite", "one species", "dumbbell", "2D"),
        default="auto",
        help="the kind of lattice, which picks the bundled model and the "
        "classes: perovskite, one species (metals, particles), dumbbell ([110] "
        "Si, GaAs), 2D (MoS2); auto tells metals and dumbbells from "
        "perovskites (docs/segmentation.md)",
    )
    an.add_argument(
        "--precision",
        choices=("float32", "bfloat16"),
        default="float32",
        help="the network's arithmetic: bfloat16 runs it about twice as fast "
        "on a CPU with native bfloat16 (AVX512-BF16 or AMX; refused without), "
        "its probabilities within about 0.01 of float32's",
    )
    an.add_argument(
        "--pixel-size",
        type=_positive_float,
        default=None,
        help="pixel size in nm, for a file without a calibration "
        "(e.g. a TIFF); default: the file's",
    )
    an.set_defaults(run=_analyze)


def _train_command(sub) -> None:
    """``stemunmix train`` and its options."""
    train = sub.add_parser("train", help="train a segmentation model")
    train.add_argument(
        "--out",
        default="stemunmix-model",
        help="folder for model.pt and its card (default stemunmix-model)",
    )
    train.add_argument(
        "--steps", type=_integer(1), default=4000, help="optimiser steps (default 4000)"
    )
    train.add_argument(
        "--batch-size",
        type=_integer(1),
        default=8,
        help="synthetic patches per step (default 8)",
    )
    train.add_argument(
        "--seed",
        type=_integer(0),
        default=0,
        help="seed of the synthetic training data (default 0)",
    )
    train.add_argument(
        "--device",
        default=None,
        help="torch device, e.g. cpu or cuda (default: cuda where present)",
    )
    train.set_defaults(run=_train)


def _shown_on_the_terminal() -> bool:
    """Whether warnings go to Python's own display (not recorded by a caller
    such as ``warnings.catch_warnings(record=True)`` or a test harness)."""
    impl = getattr(warnings, "_showwarnmsg_impl", None)
    return warnings.showwarning is getattr(warnings, "_showwarning_orig", None) and (
        getattr(impl, "__module__", None) == "warnings"
    )


def _one_line(command: str):
    """A ``warnings.showwarning`` for the terminal: each warning one line,
    "stemunmix COMMAND: warning: ...", written through the progress bars
    (no source path, no code line)."""

    def show(message, category, filename, lineno, file=None, line=None):
        text = f"stemunmix {command}: warning: {message}"
        try:
            from tqdm import tqdm

            tqdm.write(text, file=sys.stderr)
        except ImportError:  # pragma: no cover
            print(text, file=sys.stderr)

    return show


def _run(args) -> int:
    """The command, its messages kept off standard output with ``--quiet``
    or ``--json`` (which then prints the summary.json it wrote)."""
    if not (getattr(args, "quiet", False) or getattr(args, "json", False)):
        return args.run(args)
    with contextlib.redirect_stdout(io.StringIO()):
        code = args.run(args)
    if args.json and code == 0:
        sys.stdout.write((Path(args.out) / "summary.json").read_text(encoding="utf-8"))
    return code


def main(argv=None) -> int:
    parser = _parser()
    try:
        args = parser.parse_args(argv)
    except UserError as exc:
        argv = sys.argv[1:] if argv is None else list(argv)
        command = next((a for a in argv if a in ("demo", "analyze", "train")), "")
        print(f"stemunmix {command}".strip() + f": {exc}", file=sys.stderr)
        return 2
    try:
        with warnings.catch_warnings():
            if _shown_on_the_terminal():
                warnings.showwarning = _one_line(args.command)
            return _run(args)
    except (UserError, ValueError, TypeError, OSError) as exc:
        print(f"stemunmix {args.command}: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
