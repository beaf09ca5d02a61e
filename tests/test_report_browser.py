"""``anonlab report --html`` opened in a real browser: headless Chromium (Debian's ``chromium`` and
``chromium-driver``) driven by selenium.

The page is made by the real commands: ``anonlab bench experiment=smoke`` (detection rows on the embedded default
photos), ``anonlab patch eval`` with the bundled demo patch (transfer matrix), ``anonlab redact`` on one photo
(leaks.json), ``anonlab recommend`` on the default photos (recommend.json/yaml, thumbnails), and identity rows from
the identity evaluation on 4 AT&T people (../shared; until ``anonlab bench`` writes identity.parquet itself).
Screenshots go into the test's run folder (tmp_path), never into the repository.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from conftest import require_packages, shared_path
from images import BUS, package_file
from test_redact import default_photos

ENV = {**os.environ, "PYTHONWARNINGS": "ignore"}
CHROMIUM, CHROMEDRIVER = shutil.which("chromium"), shutil.which("chromedriver")
#: the render budget for 10,000 result rows (issue 15)
RENDER_BUDGET_S = 5.0


def anonlab(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "anonlab.cli.main", *args], capture_output=True, text=True, check=False,
                          env=ENV, timeout=900)


@pytest.fixture(autouse=True)
def _no_network(monkeypatch):
    """As conftest's guard, but selenium must reach chromedriver on the loopback interface: loopback is allowed,
    every other address still refuses."""
    real_connect = socket.socket.connect

    def guarded(self, address):
        if self.family != socket.AF_UNIX and not (isinstance(address, tuple) and address[0] in
                                                  ("127.0.0.1", "::1", "localhost")):
            raise ConnectionRefusedError(f"network access attempted in a test: {address!r}")
        return real_connect(self, address)

    monkeypatch.setattr(socket.socket, "connect", guarded)
    yield


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> dict[str, Path]:
    """A run of the smoke job, a patch evaluation, a redaction with its verification pass and a recommendation for
    the default photos, made by the CLI."""
    root = tmp_path_factory.mktemp("runs")
    out = {"bench": root / "bench", "patch": root / "patch_eval", "redact": root / "redact", "rec": root / "rec"}
    proc = anonlab("bench", "experiment=smoke", f"out={out['bench']}")
    assert proc.returncode == 0, proc.stderr
    proc = anonlab("patch", "eval", "patches=[demo_yolox_nano]", "detectors=[yolox_nano,hog_person]", "limit=3",
                   f"out={out['patch']}")
    assert proc.returncode == 0, proc.stderr
    proc = anonlab("redact", str(package_file(*BUS)), "--out", str(out["redact"]))
    assert proc.returncode == 0, proc.stderr
    photos = root / "photos"
    photos.mkdir()
    for name, src in default_photos().items():
        (photos / name).symlink_to(src)
    proc = anonlab("recommend", str(photos), "--threat", "basic", "--out", str(out["rec"]), "--no-progress")
    assert proc.returncode == 0, proc.stderr
    return out


@pytest.fixture(scope="module")
def identity_run(tmp_path_factory) -> Path:
    """Identity rows of three attackers on 4 AT&T people (3 photos each) under two blur and two pixelation
    strengths, through the identity evaluation the bench uses (:func:`anonlab.identity.evaluate.run_identity`;
    written as identity_shards, as a run that has not merged them yet)."""
    import torch
    from hydra import compose, initialize_config_dir

    from anonlab.build import CONF_DIR, build_settings
    from anonlab.identity.evaluate import build_identity, run_identity

    root = shared_path("datasets/att_orl_faces")
    require_packages("dlib_resnet")
    out = tmp_path_factory.mktemp("identity")
    with initialize_config_dir(version_base="1.3", config_dir=str(CONF_DIR)):
        cfg = compose(config_name="bench", overrides=[
            f"identity.datasets=[{{name: att_faces, root: '{root}', subjects: 4, images_per_subject: 3}}]",
            "identity.recognizers=[dlib_resnet]", "identity.n_boot=200",
            "sweep=[{name: gaussian_blur, sigma: null, sigma_rel: [0.1, 0.5]}, {name: pixelate, blocks: [8, 4]}]"])
    settings = build_settings(cfg)
    run_identity(build_identity(cfg, settings, torch.device("cpu")), settings, out, log=lambda msg: None)
    return out


@pytest.fixture(scope="module")
def driver():
    if CHROMIUM is None or CHROMEDRIVER is None:
        pytest.skip("headless browser test needs Debian's chromium and chromium-driver (apt-get install -y chromium "
                    "chromium-driver)")
    webdriver = pytest.importorskip("selenium.webdriver", reason="selenium is in the test extra")
    from selenium.webdriver.chrome.service import Service

    opts = webdriver.ChromeOptions()
    opts.binary_location = CHROMIUM
    for a in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu", "--window-size=1300,1000",
              "--no-first-run", "--disable-background-networking", "--disable-component-update"):
        opts.add_argument(a)
    opts.set_capability("goog:loggingPrefs", {"browser": "ALL", "performance": "ALL"})
    d = webdriver.Chrome(service=Service(CHROMEDRIVER), options=opts)  # an explicit driver: no Selenium Manager
    yield d
    d.quit()


def open_page(driver, page: Path) -> tuple[float, list[dict], list[str]]:
    """Load ``page``; (seconds until the load event, console entries, every URL the page requested)."""
    driver.get_log("browser"), driver.get_log("performance")  # drop what earlier pages logged
    t0 = time.perf_counter()
    driver.get(page.as_uri())
    wall = time.perf_counter() - t0
    nav = driver.execute_script("const n = performance.getEntriesByType('navigation')[0];"
                                "return n ? n.loadEventEnd - n.startTime : null;")
    urls = []
    for entry in driver.get_log("performance"):
        msg = json.loads(entry["message"])["message"]
        p = msg.get("params", {})
        if msg.get("method", "").startswith("Network."):
            for u in ((p.get("request") or {}).get("url"), (p.get("response") or {}).get("url")):
                if u:
                    urls.append(u)
    return (nav / 1000 if nav else wall), driver.get_log("browser"), urls


def dom_cells(driver, selector: str) -> list[dict]:
    """Every element matching ``selector`` as a dict of its data-* attributes."""
    return driver.execute_script(
        "return Array.from(document.querySelectorAll(arguments[0])).map(e => Object.assign({}, e.dataset));",
        selector)


def _f(s: str) -> float | None:
    return None if s in ("", None) else float(s)


def assert_loads_offline_and_plots_drawn(driver, page: Path, shots: Path) -> float:
    seconds, console, urls = open_page(driver, page)
    assert not [e for e in console if e["level"] in ("SEVERE", "WARNING")], console
    assert urls, "the performance log saw no request at all (the page itself should be one)"
    assert all(u.startswith(("file:", "data:")) for u in urls), [u for u in urls if not u.startswith(("file:", "data:"))]
    plots = driver.find_elements("css selector", "figure.plot")
    assert plots
    from PIL import Image

    for i, el in enumerate(plots):
        driver.execute_script("arguments[0].scrollIntoView()", el)
        shot = shots / f"plot_{i}.png"
        el.screenshot(str(shot))
        px = np.asarray(Image.open(shot).convert("L"), dtype=np.float64)
        assert px.var() > 100, (el.get_attribute("data-plot"), px.var())  # not blank: axes, lines, colour
    height = driver.execute_script("return document.body.scrollHeight")
    driver.set_window_size(1300, min(height + 50, 12000))
    driver.save_screenshot(str(shots / "page.png"))
    driver.set_window_size(1300, 1000)
    return seconds


@pytest.mark.slow
def test_report_page_opens_offline_and_shows_the_stored_numbers(runs, identity_run, driver, tmp_path):
    page = runs["bench"] / "report.html"
    proc = anonlab("report", str(runs["bench"]), str(runs["patch"]), str(runs["redact"]), str(identity_run),
                   str(runs["rec"]), "--html", str(page))
    assert proc.returncode == 0, proc.stderr
    assert page.with_suffix(".md").is_file()
    shots = runs["bench"] / "screenshots"
    shots.mkdir(exist_ok=True)
    seconds = assert_loads_offline_and_plots_drawn(driver, page, shots)
    print(f"report of a smoke run, a patch eval, a redaction, identity rows and a recommendation loaded in "
          f"{seconds:.2f} s")
    kinds = {e.get_attribute("data-plot").split(":")[0] for e in driver.find_elements("css selector", "figure.plot")}
    assert {"curves", "heatmap", "face_px", "patch", "identity"} <= kinds

    # detection: every (setting, detector) of summary.parquet, as the bench wrote it, and nothing else
    summary = pq.read_table(runs["bench"] / "summary.parquet").to_pylist()
    cells = {(c["setting"], c["detector"]): c for c in dom_cells(driver, '[data-section="detection"]')}
    assert set(cells) == {(r["setting"], r["detector"]) for r in summary}
    for r in summary:
        c = cells[(r["setting"], r["detector"])]
        for attr, col in (("value", "recall"), ("lo", "recall_lo"), ("hi", "recall_hi")):
            assert _f(c[attr]) == pytest.approx(r[col], abs=1e-6), (r["setting"], r["detector"], col)
        assert int(c["nImages"]) == r["n_images"] and int(c["nGt"]) == r["n_gt"]
        assert c["configHash"] == r["config_hash"]

    # patch transfer: every row of patch_eval.json
    rows = json.loads((runs["patch"] / "patch_eval.json").read_text())["rows"]
    cells = {(c["condition"].split(":", 1)[1], c["setting"], c["detector"]): c
             for c in dom_cells(driver, '[data-section="patch"]')}
    assert len(cells) == len(rows)
    for r in rows:
        c = cells[(r["condition"], r["setting"], r["detector"])]
        assert _f(c["value"]) == pytest.approx(r["recall"], abs=1e-6)
        assert _f(c["lo"]) == pytest.approx(r["recall_lo"], abs=1e-6)
        assert (c["trainedOn"] or None) == r["trained_on"]

    # redaction verification and run metadata
    leaks = json.loads((runs["redact"] / "leaks.json").read_text())
    (n,) = dom_cells(driver, '[data-section="leaks"]')
    assert int(n["value"]) == len(leaks)
    run = json.loads((runs["bench"] / "run.json").read_text())
    meta = {c["metric"]: c["value"] for c in dom_cells(driver, '[data-section="meta"]')}
    assert int(meta["seed"]) == run["seed"] and int(meta["n_images"]) == run["n_images"]
    assert int(meta["n_failures"]) == len(run["failures"])
    # a face of the embedded default photos under every setting of the run (the redactions draw; none is worn)
    thumbs = [c["setting"] for c in dom_cells(driver, '[data-section="thumb"]')]
    assert thumbs == list(dict.fromkeys(r["setting"] for r in summary))
    # identity leakage: every row of the identity shards, every metric with its interval
    ident = [r for f in sorted(identity_run.rglob("part-*.parquet")) for r in pq.read_table(f).to_pylist()]
    cells = {(c["setting"], c["adversary"], c["metric"]): c for c in dom_cells(driver, '[data-section="identity"]')}
    assert len(cells) == 7 * len(ident)
    for r in ident:
        for m in ("n_pairs", "n_not_embedded", "accuracy", "auc", "tar_at_far_1e-2", "rank1", "rank5"):
            c = cells[(r["setting"], r["adversary"], m)]
            assert _f(c["value"]) == pytest.approx(r[m], abs=1e-6, nan_ok=True), (r["setting"], r["adversary"], m)
            if f"{m}_lo" in r:
                assert _f(c["lo"]) == pytest.approx(r[f"{m}_lo"], abs=1e-6, nan_ok=True)
                assert _f(c["hi"]) == pytest.approx(r[f"{m}_hi"], abs=1e-6, nan_ok=True)

    # the recommendation: its verdict, the preset, and every candidate x adversary of the evidence
    rec = json.loads((runs["rec"] / "recommend.json").read_text())
    facts = {c["key"]: c["value"] for c in dom_cells(driver, '[data-section="recommend"][data-key]')}
    assert facts["recommended_setting"] == rec["recommended_setting"] and facts["threat"] == "basic"
    import yaml

    for k, v in yaml.safe_load((runs["rec"] / "recommend.yaml").read_text()).items():
        assert facts[f"preset.{k}"] == (v if isinstance(v, str) else json.dumps(v))
    cells = {(c["setting"], c["adversary"]): c for c in dom_cells(driver, '[data-section="recommend"][data-adversary]')}
    assert len(cells) == sum(len(c["adversaries"]) for c in rec["candidates"])
    for cand in rec["candidates"]:
        for a in cand["adversaries"]:
            c = cells[(cand["setting"], a["name"])]
            assert (int(c["k"]), int(c["n"])) == (a["k"], a["n"])
            assert _f(c["hi"]) == pytest.approx(a["hi"], abs=1e-9) and _f(c["bound"]) == pytest.approx(a["bound"])
    n_thumbs = len(driver.find_elements("css selector", ".box .thumbs img"))
    assert n_thumbs == 2 * len(rec["thumbnails"]) > 0


def replicate(results: Path, out: Path, n_rows: int, conditions: int = 4, strengths: int = 6) -> int:
    """Write ``out/results.parquet`` (and run.json) holding at least ``n_rows`` rows, all copies of the real rows in
    ``results``: copy k goes to camera condition ``k % conditions`` (a camera label), strength step
    ``(k // conditions) % strengths`` (each numeric defense parameter but mask_scale scaled by 1 + step/strengths,
    a new setting label and config hash) and image replica ``k // (conditions * strengths)`` (image ids suffixed):
    many settings, conditions and images, each with real per-image counts as measured."""
    t = pq.read_table(results)
    rows, new, k = t.to_pylist(), [], 0
    while len(new) < n_rows:
        cond, step, rep = k % conditions, (k // conditions) % strengths, k // (conditions * strengths)
        for r in rows:
            clean = r["defense"] == "none"
            if clean and step:
                continue  # one clean baseline per condition
            r = dict(r, camera="none" if cond == 0 else f"replica{cond}", image=f"{r['image']}@{rep}")
            if step:
                p = {key: (type(v)(v * (1 + step / strengths)) if isinstance(v, (int, float))
                           and not isinstance(v, bool) and key != "mask_scale" else v)
                     for key, v in json.loads(r["params"]).items()}
                r["params"] = json.dumps(p, sort_keys=True)
                r["setting"] = f"{r['setting']}#{step}"
            r["config_hash"] = f"{r['config_hash']}-{cond}-{step}"
            new.append(r)
        k += 1
    out.mkdir(parents=True, exist_ok=True)
    pq.write_table(pa.Table.from_pylist(new, schema=t.schema), out / "results.parquet")
    shutil.copy(results.parent / "run.json", out / "run.json")
    return len(new)


@pytest.mark.slow
def test_ten_thousand_rows_render_in_under_five_seconds(runs, driver, tmp_path):
    """10,000+ result rows: real rows of the smoke run (per-image counts and boxes as measured) replicated with
    varied settings, camera labels and image ids (see :func:`replicate`), not 10,000 new engine evaluations. The page
    aggregates before drawing (one point per setting, detector and condition), so its size and load time stay
    small; the load time is measured in the browser and printed."""
    run = tmp_path / "big"
    n = replicate(runs["bench"] / "results.parquet", run, 10_000)
    assert n >= 10_000
    page = run / "report.html"
    t0 = time.perf_counter()
    proc = anonlab("report", str(run), "--html", str(page))
    build_s = time.perf_counter() - t0
    assert proc.returncode == 0, proc.stderr
    size_mb = page.stat().st_size / 2**20
    seconds = assert_loads_offline_and_plots_drawn(driver, page, run)
    print(f"{n} result rows: report written in {build_s:.1f} s ({size_mb:.2f} MiB), loaded in the browser in "
          f"{seconds:.2f} s")
    assert seconds < RENDER_BUDGET_S
    assert size_mb < 5
    # the numbers on the page are the library's summary of the replicated rows
    from anonlab.metrics.summary import summarize

    summary = summarize(pq.read_table(run / "results.parquet"))
    cells = {c["configHash"]: c for c in dom_cells(driver, '[data-section="detection"]')}
    assert len(cells) == len(summary)
    for r in summary[:: max(1, len(summary) // 40)]:
        assert _f(cells[r["config_hash"]]["value"]) == pytest.approx(r["recall"], abs=1e-6)
        assert _f(cells[r["config_hash"]]["hi"]) == pytest.approx(r["recall_hi"], abs=1e-6)


@pytest.mark.slow
def test_bad_run_folders_are_one_line_and_write_nothing(runs, tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    old = tmp_path / "old"
    old.mkdir()
    t = pq.read_table(runs["bench"] / "results.parquet")
    pq.write_table(t.drop_columns(["face_px", "config_hash"]), old / "results.parquet")  # before those columns
    for folder, says in ((empty, "holds no results"), (old, "missing column(s) face_px, config_hash"),
                         (tmp_path / "absent", "does not exist")):
        out = tmp_path / "out" / f"{folder.name}.html"
        proc = anonlab("report", str(folder), "--html", str(out))
        assert proc.returncode == 2, proc.stderr
        assert proc.stderr.count("\n") == 1 and proc.stderr.startswith("error: ") and says in proc.stderr, proc.stderr
        assert not out.parent.exists() or not any(out.parent.iterdir())
    # a good folder beside a bad one: still nothing written
    out = tmp_path / "out" / "mixed.html"
    proc = anonlab("report", str(runs["bench"]), str(old), "--html", str(out))
    assert proc.returncode == 2 and "older schema" in proc.stderr
    assert not out.parent.exists() or not any(out.parent.iterdir())


def page_cells(page: Path, section: str) -> list[dict]:
    """The data-* attributes of every element of ``section`` in the written page (no browser)."""
    from html.parser import HTMLParser

    found = []

    class P(HTMLParser):
        def handle_starttag(self, tag, attrs):
            a = {k[5:]: v for k, v in attrs if k.startswith("data-")}
            if a.get("section") == section:
                found.append(a)

    P().feed(page.read_text())
    return found


@pytest.mark.slow
def test_unfinished_shards_merge_and_a_job_given_twice_is_refused(runs, tmp_path):
    """The shards of a job that has no results.parquet yet report the same numbers as the finished job; the same
    job merged twice (a folder and its copy) is one line, exit 2, and no page."""
    partial = tmp_path / "partial"
    shutil.copytree(runs["bench"] / "shards", partial / "shards")
    pages = {}
    for name, folder in (("finished", runs["bench"]), ("partial", partial)):
        pages[name] = tmp_path / f"{name}.html"
        proc = anonlab("report", str(folder), "--html", str(pages[name]))
        assert proc.returncode == 0, proc.stderr
    key = ("setting", "detector", "value", "lo", "hi", "n-images", "config-hash")
    finished, unfinished = ({tuple(c[k] for k in key) for c in page_cells(p, "detection")} for p in pages.values())
    assert finished and finished == unfinished
    twice = tmp_path / "twice.html"
    proc = anonlab("report", str(runs["bench"]), str(partial), "--html", str(twice))
    assert proc.returncode == 2 and proc.stderr.count("\n") == 1 and "same job twice" in proc.stderr, proc.stderr
    assert not twice.exists() and not twice.with_suffix(".md").exists()
