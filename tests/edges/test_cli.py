import contextlib
import html
import io
import re
import shutil
from pathlib import Path

import hyperspy.api as hs
import numpy as np
import pytest

from stemunmix.cli import main
from stemunmix.nn import load_model
from stemunmix.synthetic import perovskite


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    """One run of ``stemunmix demo`` (about 10 s), shared by the tests."""
    out = tmp_path_factory.mktemp("demo")
    text = io.StringIO()
    with contextlib.redirect_stdout(text):
        code = main(["demo", "--out", str(out)])
    return code, out, text.getvalue()


def _figures(page: Path) -> list[str]:
    return re.findall(r'<img src="([^"]+)"', page.read_text())


def test_demo_writes_a_report_with_its_figures(demo):
    code, out, text = demo
    assert code == 0
    figures = _figures(out / "report.html")
    assert len(figures) >= 7
    for name in figures:
        png = (out / name).read_bytes()
        assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 5000, name
    ari = float(re.search(r"adjusted Rand index ([0-9.]+)", text).group(1))
    # 512^2 with 0.8 nm walls: `stemunmix demo --seed 0..5` printed 0.68-0.74
    # (seed 0: 0.709); a pipeline that loses the domains scores near 0.
    assert ari > 0.6
    found = re.search(r"total time ([0-9.]+) s", text)
    assert found is not None


def test_demo_numbers_are_machine_readable(demo):
    """summary.json holds the page's numbers: a script needs no HTML."""
    import json

    code, out, text = demo
    numbers = json.loads((out / "summary.json").read_text())
    ari = float(re.search(r"adjusted Rand index ([0-9.]+)", text).group(1))
    assert round(numbers["domain_agreement_with_truth"], 3) == ari
    assert numbers["domains"] == numbers["domain_test"]["n_domains"] >= 2
    assert numbers["columns"]["A"] > 500 and numbers["columns"]["B"] > 500
    assert (
        numbers["windows"]["count"] == hs.load(out / "descriptors.hspy").data.shape[0]
    )
    assert numbers["image"]["units"] == "nm" and numbers["image"]["shape"] == [512, 512]
    assert len(numbers["lattice_vectors_px"]) == 2
    differences = numbers["domain_differences"]
    assert len(differences) == numbers["domains"]
    assert all(d["structural"] for d in differences)  # stripes of polarization


def test_demo_results_reload_in_hyperspy(demo):
    _, out, _ = demo
    image = hs.load(out / "image.hspy")
    assert image.metadata.Signal.signal_type == "atomic_resolution"
    assert len(image.columns.select("A")) > 400 and len(image.columns.select("B")) > 400
    ld = hs.load(out / "descriptors.hspy")
    assert ld.metadata.Signal.signal_type == "local_descriptors"
    chosen = ld.metadata.Signal.stemunmix.model_selection
    n = ld.axes_manager.navigation_size
    assert ld.learning_results.loadings.shape == (n, chosen.components.value)
    labels = np.asarray(ld.learning_results.cluster_labels)
    assert labels.shape == (chosen.domains.value, n)
    assert chosen.domains.value >= 3 and "silhouette" in chosen.domains.why
    assert ld.get_domain_map().data.shape == image.data.shape


def test_report_shows_every_image_in_headless_chromium(demo):
    _, out, _ = demo
    browser = shutil.which("chromium") or shutil.which("chromium-browser")
    driver = shutil.which("chromedriver")
    if browser is None or driver is None:
        pytest.skip(
            "headless Chromium not installed (Debian: chromium chromium-driver)"
        )
    webdriver = pytest.importorskip("selenium.webdriver", reason="selenium missing")
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = browser
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu",
                 "--disable-dev-shm-usage"):  # fmt: skip
        options.add_argument(flag)
    chrome = webdriver.Chrome(service=Service(driver), options=options)
    try:
        chrome.get((out / "report.html").resolve().as_uri())
        shown = chrome.execute_script(
            "return Array.from(document.images).map("
            "i => [i.getAttribute('src'), i.complete && i.naturalWidth > 0])"
        )
    finally:
        chrome.quit()
    assert len(shown) == len(_figures(out / "report.html")) >= 5
    assert all(ok for _, ok in shown), [src for src, ok in shown if not ok]


@pytest.fixture(scope="module")
def image_file(tmp_path_factory):
    image, _ = perovskite(shape=256, seed=5, domains="two_stripes")
    path = tmp_path_factory.mktemp("file") / "synthetic.hspy"
    image.save(path)
    return path


@pytest.mark.parametrize("method", ["pca", "ica", "gmm"])
def test_analyze_runs_each_method_and_writes_reloadable_results(image_file, tmp_path,
                                                                method):  # fmt: skip
    out = tmp_path / "report"
    code = main(["analyze", str(image_file), "--method", method, "--components", "2",
                 "--out", str(out), "--no-scree"])  # fmt: skip
    assert code == 0
    assert len(_figures(out / "report.html")) >= 5
    ld = hs.load(out / "descriptors.hspy")
    assert ld.learning_results.loadings.shape[1] == 2
    if method == "ica":
        assert ld.learning_results.bss_loadings.shape[1] == 2
    image = hs.load(out / "image.hspy")
    assert len(image.columns) > 200


def test_analyze_lazy_saves_zspy_equal_to_eager(image_file, tmp_path):
    assert main(["analyze", str(image_file), "--out", str(tmp_path / "e"),
                 "--components", "2", "--no-scree"]) == 0  # fmt: skip
    assert main(["analyze", str(image_file), "--out", str(tmp_path / "l"),
                 "--components", "2", "--no-scree", "--lazy"]) == 0  # fmt: skip
    eager = hs.load(tmp_path / "e" / "image.hspy")
    lazy = hs.load(tmp_path / "l" / "image.zspy")
    assert lazy.columns == eager.columns
    # The maps analyze wrote once and read back are the eager ones.
    prob = hs.load(tmp_path / "l" / "probabilities.zspy", lazy=True)
    ref_prob = hs.load(tmp_path / "e" / "probabilities.hspy")
    np.testing.assert_allclose(prob.data.compute(), ref_prob.data, atol=1e-6)
    ld = hs.load(tmp_path / "l" / "descriptors.zspy", lazy=True)
    ref = hs.load(tmp_path / "e" / "descriptors.hspy")
    np.testing.assert_allclose(ld.data.compute(), ref.data, atol=1e-6)


def test_analyze_the_real_pbtio3_srruo3_image(real_data, tmp_path):
    out = tmp_path / "pto"
    code = main(["analyze", str(real_data / "temul_PTO-SRO_HAADF_Hadjimichael2020.hspy"),
                 "--components", "3", "--domains", "2", "--out", str(out)])  # fmt: skip
    assert code == 0
    assert len(_figures(out / "report.html")) >= 6
    assert hs.load(out / "descriptors.hspy").learning_results.loadings.shape[1] == 3


def _fails_with_one_sentence(capsys, argv, start):
    assert main(argv) == 2
    err = capsys.readouterr().err.split("\r")[-1].strip()  # after the progress bar
    assert "\n" not in err and "Traceback" not in err
    assert err.startswith(start), err


def test_unreadable_files_give_one_sentence(tmp_path, capsys):
    _fails_with_one_sentence(capsys, ["analyze", str(tmp_path / "nope.dm4")],
                             "stemunmix analyze: cannot read")  # fmt: skip
    bad = tmp_path / "corrupt.hspy"
    bad.write_bytes(b"not an hdf5 file at all" * 10)
    _fails_with_one_sentence(capsys, ["analyze", str(bad)],
                             f"stemunmix analyze: cannot read {bad}")  # fmt: skip


def test_non_image_and_latticeless_files_give_one_sentence(tmp_path, capsys):
    spectrum = tmp_path / "spectrum.hspy"
    hs.signals.Signal1D(np.arange(100.0)).save(spectrum)
    _fails_with_one_sentence(capsys, ["analyze", str(spectrum)],
                             f"stemunmix analyze: {spectrum} holds no image")  # fmt: skip
    noise = tmp_path / "noise.hspy"
    rng = np.random.default_rng(0)
    hs.signals.Signal2D(rng.poisson(20, (256, 256)).astype("f4")).save(noise)
    _fails_with_one_sentence(capsys, ["analyze", str(noise)],
                             f"stemunmix analyze: {noise} shows no lattice")  # fmt: skip


def test_train_command_writes_a_loadable_model(tmp_path, capsys):
    assert (
        main(["train", "--steps", "2", "--batch-size", "2", "--out", str(tmp_path)])
        == 0
    )
    model = load_model(tmp_path / "model.pt")
    assert model.card["recipe"]["steps"] == 2


def test_bad_arguments_give_one_sentence(capsys):
    _fails_with_one_sentence(capsys, ["train", "--steps", "0", "--out", "unused"],
                             "stemunmix train: argument --steps: must be an integer >= 1")  # fmt: skip
    _fails_with_one_sentence(capsys, ["analyze", "x.tif", "--pixel-size", "-0.02"],
                             "stemunmix analyze: argument --pixel-size: must be a "
                             "positive number")  # fmt: skip


def test_version_and_help_name_every_option(capsys):
    from stemunmix import __version__

    with pytest.raises(SystemExit):
        main(["--version"])
    assert capsys.readouterr().out.strip() == f"stemunmix {__version__}"
    for command in ("demo", "analyze", "train"):
        with pytest.raises(SystemExit):
            main([command, "--help"])
        text = capsys.readouterr().out
        assert "``" not in text  # no raw reStructuredText
        options = re.findall(r"^  (--[a-z-]+)", text, flags=re.M)
        assert len(options) >= 3
        for option in options:
            block = text.split(option, 1)[1].split("\n  --", 1)[0]
            assert len(block.strip()) > 10, f"{command} {option} has no help"


def test_pixel_size_calibrates_an_uncalibrated_file(tmp_path):
    image, _ = perovskite(shape=256, seed=5, domains="two_stripes")
    for ax in image.axes_manager.signal_axes:
        ax.scale, ax.units = 1.0, "<undefined>"
    path = tmp_path / "plain.hspy"
    image.save(path)
    text = io.StringIO()
    with contextlib.redirect_stdout(text):
        assert main(["analyze", str(path), "--out", str(tmp_path / "a"),
                     "--no-scree"]) == 0  # fmt: skip
    assert "--pixel-size" in text.getvalue()  # the hint
    assert (
        "uncalibrated (stemunmix analyze --pixel-size"
        in (tmp_path / "a" / "report.html").read_text()
    )
    assert main(["analyze", str(path), "--out", str(tmp_path / "b"), "--no-scree",
                 "--pixel-size", "0.02"]) == 0  # fmt: skip
    saved = hs.load(tmp_path / "b" / "image.hspy")
    ax = saved.axes_manager.signal_axes[0]
    assert ax.scale == pytest.approx(0.02) and ax.units == "nm"


def test_analyze_an_abf_image_finds_the_o_columns(real_data, tmp_path, capsys):
    abf = hs.load(real_data / "atomap_hist_STO110_ABF_full.hdf5", file_format="HSPY")
    path = tmp_path / "abf.hspy"
    abf.isig[:400, :400].save(path)
    _fails_with_one_sentence(capsys, ["analyze", str(path), "--model", "nosuch"],
                             "stemunmix analyze: --model 'nosuch'")  # fmt: skip
    code = main(["analyze", str(path), "--no-scree", "--components", "2",
                 "--domains", "2", "--out", str(tmp_path / "abf")])  # fmt: skip
    assert code == 0
    assert "A / B / O / background maps" in capsys.readouterr().out


def test_the_cli_writes_each_warning_as_one_line(capsys):
    from stemunmix.cli import _one_line

    show = _one_line("analyze")
    show(UserWarning("17 of 40 columns are not detected"), UserWarning, "/x/y.py", 3)
    err = capsys.readouterr().err
    assert err == "stemunmix analyze: warning: 17 of 40 columns are not detected\n"


def test_report_axes_in_nm_for_a_file_in_metres():
    from stemunmix import Columns
    from stemunmix.report.figures import _View
    from stemunmix.report.pipeline import Analysis

    image, _ = perovskite(shape=64, seed=0)
    image.columns = Columns([[5.0, 5.0]], [0], ["A", "B"])
    for ax in image.axes_manager.signal_axes:
        ax.units, ax.scale = "m", ax.scale * 1e-9
    view = _View.of(Analysis(image, None, None, "pca", 2, 2, 7, "B"))
    assert view.units == "nm"
    np.testing.assert_allclose(view.scale, (0.02, 0.02))
    np.testing.assert_allclose(view.extent[1], 64 * 0.02 - 0.01)


def test_the_report_leads_with_the_answer_then_measurements(demo):
    """Sections in the order a microscopist reads them; the summary answers
    "is there a significant distortion" with numbers from the error model."""
    import json

    _, out, _ = demo
    page = (out / "report.html").read_text()
    heads = re.findall(r"<h2>([^<]+)</h2>", page)
    assert heads == ["Summary", "Measurements per cell", "The learned descriptor",
                     "Quality control"]  # fmt: skip
    order = [page.index(f'src="{n}"') for n in ("columns.png", "cells.png",
             "strain.png", "domain_map.png", "quality.png")]  # fmt: skip
    assert order == sorted(order)
    assert "polarization.png" not in page  # the raw-offset panel is gone
    numbers = json.loads((out / "summary.json").read_text())
    pol = numbers["polarization"]
    # the demo plants 20 pm in every domain: every cell beyond 3 sigma
    assert pol["significant"] and pol["beyond_3_sigma"] > 0.95
    assert 15 < pol["median_length"] < 25 and pol["unit"] == "pm"
    assert pol["median_sigma"] < 5
    assert numbers["answer"].startswith("Yes:") and "pm" in numbers["answer"]
    assert html.escape(numbers["answer"]) in page
    q = numbers["quality"]
    assert q["sites_filled"] > 0.95 and q["vacancies"] == 0
    assert q["classes"]["A"]["off_lattice"] == 0
    assert set(numbers["strain"]) >= {"exx", "eyy", "exy", "rotation"}
    assert numbers["strain"]["exx"]["spread"] < 1  # % : an unstrained crystal
    assert numbers["error_model"]["calibration"][0] == pytest.approx(1, abs=0.3)
    # the demo plants 10 % darker A sites (La on Bi): one class of them
    dark = numbers["intensity_classes"]["A"]
    assert dark["classes"] == 2 and 0.05 < dark["shares"][0] < 0.15
    assert "B" not in numbers["intensity_classes"]
    assert 'src="intensity.png"' in page and 'src="rows.png"' in page
    rows = numbers["rows"]
    assert len(rows) > 20 and all(r["sigma"][0] > 0 for r in rows)


def test_the_tables_agree_with_the_saved_signals(demo):
    """columns.csv and cells.csv parse, and hold what the saved image's
    columns and the summary say."""
    import csv
    import json

    _, out, _ = demo
    with open(out / "columns.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    cols = hs.load(out / "image.hspy").columns
    assert len(rows) == len(cols)
    xy = np.array([[float(r["x_px"]), float(r["y_px"])] for r in rows])
    np.testing.assert_allclose(xy, cols.xy)
    np.testing.assert_allclose([float(r["sigma_x_px"]) for r in rows], cols.sigma[:, 0])
    assert {r["class"] for r in rows} == {"A", "B"}
    with open(out / "cells.csv", newline="") as f:
        cells = list(csv.DictReader(f))
    numbers = json.loads((out / "summary.json").read_text())
    length = [np.hypot(float(c["Px_pm"]), float(c["Py_pm"])) for c in cells
              if c["Px_pm"] != "nan"]  # fmt: skip
    assert len(length) == numbers["polarization"]["cells"]
    assert np.median(length) == pytest.approx(numbers["polarization"]["median_length"])
    assert "exx_pct" in cells[0] and "sigma_exx_pct" in cells[0]


def test_json_and_quiet_keep_standard_output_for_the_summary(tmp_path):
    import json

    text, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(text), contextlib.redirect_stderr(err):
        code = main(["demo", "--size", "256", "--out", str(tmp_path / "d"), "--json",
                     "--quiet"])  # fmt: skip
    assert code == 0
    numbers = json.loads(text.getvalue())  # nothing but the summary
    assert numbers == json.loads((tmp_path / "d" / "summary.json").read_text())
    assert "training" not in err.getvalue() and "%|" not in err.getvalue()


def test_analyze_with_the_rotation_invariant_vae(image_file, tmp_path):
    out = tmp_path / "rvae"
    code = main(["analyze", str(image_file), "--method", "rvae", "--components", "2",
                 "--domains", "2", "--out", str(out), "--no-scree"])  # fmt: skip
    assert code == 0
    page = (out / "report.html").read_text()
    assert "latent traversals" in page and "Latent maps" in page
    latents = hs.load(out / "latents.hspy")
    names = list(latents.metadata.Signal.quantities)
    assert names[:5] == ["angle", "shift_x", "shift_y", "z0", "z1"]
    assert names[-2:] == ["cos_angle", "sin_angle"]
    ld = hs.load(out / "descriptors.hspy")
    # two stripes of opposite polarization: the domains follow them
    labels = np.asarray(ld.learning_results.cluster_labels)
    assert labels.shape[0] == 2 and (labels.sum(1) > 0.2 * labels.sum()).all()


def test_analyze_a_metal_particle_with_its_structure(tmp_path):
    from stemunmix.synthetic import crystal

    image, _ = crystal("fcc", "110", shape=320, particle=5.0, dose=100, seed=3)
    path = tmp_path / "particle.hspy"
    image.save(path)
    out = tmp_path / "metal"
    code = main(["analyze", str(path), "--structure", "one species", "--components",
                 "2", "--out", str(out), "--no-scree"])  # fmt: skip
    assert code == 0
    import json

    summary = json.loads((out / "summary.json").read_text())
    assert set(summary["columns"]) == {"column"} and summary["columns"]["column"] > 300
    assert summary["windows"]["centred_on"] == "column"
    assert summary["polarization"] is None  # a perovskite quantity: not measured
    # the lattice of its one class measured: no strain planted, so its spread
    # is its error bar (measured 0.98 on a 6 nm particle)
    exx = summary["strain"]["exx"]
    assert 0.6 < exx["spread"] / exx["median_sigma"] < 1.6


def test_the_structure_choices_are_segments():
    from stemunmix.cli import _parser
    from stemunmix.signals.atomic_resolution import STRUCTURES

    analyze = _parser()._subparsers._group_actions[0].choices["analyze"]
    (option,) = [a for a in analyze._actions if "--structure" in a.option_strings]
    assert tuple(option.choices) == STRUCTURES


def test_the_precision_reaches_segment_and_a_bad_one_is_refused(monkeypatch):
    """--precision goes through analyze() to segment(); an unknown one is
    refused by analyze() before any work, naming the parameter."""
    from stemunmix.cli import _parser
    from stemunmix.report import pipeline
    from stemunmix.synthetic import perovskite

    args = _parser().parse_args(["analyze", "x.tif", "--precision", "bfloat16"])
    assert args.precision == "bfloat16"
    image, _ = perovskite(shape=128, dose=50, seed=1)
    with pytest.raises(ValueError, match="precision"):
        pipeline.analyze(image, precision="float16", log=lambda *a: None)
    seen = {}

    def segment(self, model=None, **kwargs):
        seen.update(kwargs)
        raise RuntimeError("stop here")

    monkeypatch.setattr(type(image), "segment", segment)
    with pytest.raises(RuntimeError, match="stop here"):
        pipeline.analyze(image, precision="bfloat16", log=lambda *a: None)
    assert seen["precision"] == "bfloat16"
