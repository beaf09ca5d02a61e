"""``anonlab report RUN_DIR... --html OUT``: one self-contained HTML page (and a Markdown summary for CI).

Everything is inline: CSS in a ``<style>`` element, figures drawn with matplotlib as SVG (PNG when large) in
``data:`` URLs, thumbnails as base64 JPEG; no script, no font, nothing fetched from the network. Every number on
the page sits in an element with stable ``data-*`` attributes (``data-section``, ``data-condition``,
``data-setting``, ``data-detector`` / ``data-adversary``, ``data-metric``, ``data-value``; intervals in
``data-lo``/``data-hi``) so a test or a script can read them from the DOM.

Numbers: detection recall per (config_hash, i.e. dataset x camera x regions x setting x detector, plus the rest
of the job's identity) is pooled over images (sum TP / sum ground truth) with the 95 % percentile-bootstrap
interval over images of :func:`anonlab.metrics.bootstrap.bootstrap_ratio` (1000 resamples, seed 0, images in
id order), exactly as :func:`anonlab.metrics.summary.summarize` computes ``summary.parquet``; plots draw
aggregates only (one point per setting, detector and condition), never one mark per result row.
"""

from __future__ import annotations

import base64
import datetime as _dt
import html
import io
import json
import math
import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np

from anonlab.metrics.bootstrap import bootstrap_ratio
from anonlab.report.inputs import Inputs, ReportInputError, collect

#: face-height bins: whole pixels when a condition has at most this many distinct heights, else half-octave bins
MAX_EXACT_FACE_PX = 10
#: at most this many settings get their own panel in the recall-vs-face-height figure (clean + strongest per defense
#: beyond it)
MAX_FACE_PANELS = 16
#: a figure whose SVG is larger than this is embedded as a PNG at PNG_DPI instead (page size)
MAX_SVG_BYTES, PNG_DPI = 200_000, 80
#: below this recall (percent) a cell is "hidden" (green), above 50 "still detected" (red): the terminal table's colours
HIDDEN, FOUND = 0.2, 0.5

CSS = """
body{font-family:system-ui,-apple-system,"Segoe UI",sans-serif;margin:0 auto;max-width:1280px;padding:0 1.5em 3em;
color:#1d1d1f;background:#fff;line-height:1.4}
h1{font-size:1.6em;margin:1em 0 .2em}h2{font-size:1.25em;border-bottom:1px solid #ddd;padding-bottom:.2em;margin-top:2em}
h3{font-size:1.05em;margin:1.3em 0 .4em}
table{border-collapse:collapse;font-size:.85em;margin:.4em 0 1em}th,td{border:1px solid #ddd;padding:.2em .5em}
th{background:#f4f4f6;text-align:left}td.n{text-align:right;font-variant-numeric:tabular-nums;white-space:nowrap}
td.hid{background:#e3f4e1}td.mid{background:#fdf3d8}td.vis{background:#fbe0de}
figure.plot{margin:.5em 0 1.2em}figure.plot img{max-width:100%;height:auto;display:block}
figcaption,.note{font-size:.85em;color:#555}.skip{color:#777;font-style:italic}
.box{border:2px solid #2a7d2a;background:#f3faf3;padding:.6em 1em;border-radius:6px}
.thumbs{display:flex;flex-wrap:wrap;gap:.5em}.thumbs figure{margin:0;text-align:center;font-size:.75em;width:110px}
.thumbs img{height:96px;image-rendering:pixelated;border:1px solid #ccc}
details>summary{cursor:pointer;color:#245}code{font-size:.9em}
"""


# ---------------------------------------------------------------------------------------------------- aggregation
def canonical(params: str | None) -> str:
    """A defense's params JSON with sorted keys (identity rows and detection rows compare on it)."""
    try:
        return json.dumps(json.loads(params or "{}"), sort_keys=True)
    except json.JSONDecodeError:
        return params or "{}"


def _order(values: Iterable[Any]) -> list[Any]:
    return list(dict.fromkeys(values))


def detection_cells(rows: list[dict], seed: int = 0) -> list[dict]:
    """One cell per config_hash: pooled recall with its 95 % bootstrap interval over images, disappearance, counts,
    and ``condition``: an index into :func:`conditions`' list (dataset, camera, regions, scene; a second config
    hash for the same setting and detector there, e.g. another device, makes a second variant of it).

    Raises :class:`ReportInputError` when one image appears twice under a config hash (a job merged twice)."""
    groups: dict[str, dict] = {}
    for r in rows:
        g = groups.get(r["config_hash"])
        if g is None:
            g = groups[r["config_hash"]] = {"first": r, "rows": {}}
        if r["image"] in g["rows"]:
            raise ReportInputError(f"image {r['image']!r} appears twice for {r['setting']} x {r['detector']} "
                                   f"(config {r['config_hash']}): the merged folders hold the same job twice")
        g["rows"][r["image"]] = r
    variants: dict[tuple, list[str]] = {}
    cells = []
    for h, g in groups.items():
        f = g["first"]
        base = (f["dataset"], f["camera"], f["regions"], f["scene"])
        seen = variants.setdefault((*base, f["setting"], f["detector"]), [])
        seen.append(h)
        ordered = [g["rows"][k] for k in sorted(g["rows"])]
        per = np.array([(r["tp"], r["n_gt"]) for r in ordered], dtype=np.float64).reshape(-1, 2)
        lo, hi = bootstrap_ratio(per[:, 0], per[:, 1], seed=seed)
        n_gt = int(per[:, 1].sum())
        clean = sum(r["clean_found"] for r in ordered)
        cells.append({
            "cond": (*base, len(seen) - 1), "setting": f["setting"], "defense": f["defense"],
            "params": canonical(f["params"]), "detector": f["detector"], "detector_kind": f["detector_kind"],
            "pseudo_gt": bool(f["pseudo_gt"]), "config_hash": h, "n_images": len(ordered), "n_gt": n_gt,
            "tp": int(per[:, 0].sum()), "recall": per[:, 0].sum() / n_gt if n_gt else None, "recall_lo": lo,
            "recall_hi": hi,
            "disappearance": sum(r["lost"] for r in ordered) / clean if clean else None})
    return cells


def cond_label(cond: tuple) -> str:
    dataset, camera, regions, scene, variant = cond
    return (f"{dataset} · camera {camera} · regions {regions}" + (f" · scene.face_px={scene:g}" if scene else "")
            + (f" · variant {variant + 1}" if variant else ""))


def _params(p: str) -> dict:
    try:
        return json.loads(p)
    except json.JSONDecodeError:
        return {}


def strength_ticks(settings: list[tuple[str, str]]) -> list[str]:
    """Tick labels for one defense's settings ``[(label, canonical params)]`` in run order: the parameters that
    differ between them (``sigma_rel=0.5``), or the label when nothing differs."""
    ps = [_params(p) for _, p in settings]
    keys = _order(k for p in ps for k in p)
    vary = [k for k in keys if len({json.dumps(p.get(k)) for p in ps}) > 1]
    out = []
    for (label, _), p in zip(settings, ps):
        t = ",".join(f"{k}={p.get(k)}" for k in vary if k in p)
        out.append(t or label)
    return out


def _known(v: Any) -> bool:
    """Not None and not NaN (NaN: a metric the rows mark as not measurable)."""
    return v is not None and not (isinstance(v, (float, np.floating)) and math.isnan(v))


def _pct(v: float | None, digits: int = 0) -> str:
    return f"{100 * v:.{digits}f}" if _known(v) else "—"


def _num(v: Any) -> str:
    """A value for a ``data-*`` attribute: full precision (repr of the float), empty for None."""
    if v is None:
        return ""
    if isinstance(v, (float, np.floating)):
        return repr(float(v)) if _known(v) else "nan"
    if isinstance(v, (int, np.integer)) and not isinstance(v, bool):
        return str(int(v))
    return str(v)


def _attrs(**kw: Any) -> str:
    return " ".join(f'data-{k.replace("_", "-")}="{html.escape(_num(v) if not isinstance(v, str) else v)}"'
                    for k, v in kw.items())


def _td(text: str, cls: str = "n", **data: Any) -> str:
    """A table cell holding ``text`` (already escaped) with ``data-*`` attributes ``data``."""
    return f'<td class="{cls}" {_attrs(**data)}>{text}</td>'


def _ci(v: float | None, lo: float | None, hi: float | None, digits: int = 0) -> str:
    """``v [lo–hi]`` in percent; an em dash for no value."""
    return "—" if not _known(v) else f"{_pct(v, digits)} [{_pct(lo, digits)}–{_pct(hi, digits)}]"


def _cls(v: float | None) -> str:
    if v is None:
        return "n"
    return "n " + ("hid" if v < HIDDEN else "mid" if v < FOUND else "vis")


def face_bins(values: list[float]) -> tuple[list[float], Any]:
    """(bin labels, value -> bin label): whole pixels when few distinct heights, else half-octave bins labelled
    by their geometric centre (px)."""
    distinct = sorted({round(v) for v in values})
    if len(distinct) <= MAX_EXACT_FACE_PX:
        return [float(d) for d in distinct], lambda v: float(round(v))
    edges = 2 ** np.arange(np.floor(2 * np.log2(max(min(values), 1))) / 2, np.log2(max(values)) + 0.5, 0.5)

    def which(v: float) -> float:
        i = int(np.clip(np.searchsorted(edges, v, side="right") - 1, 0, len(edges) - 2))
        return float(round(np.sqrt(edges[i] * edges[i + 1]), 1))

    return sorted({which(v) for v in values}), which


def recall_by_face(rows: list[dict], seed: int = 0) -> dict:
    """{cond: {(setting, detector): {face bin: (recall, lo, hi, n_images)}}}; rows without a face height are left
    out; conditions with fewer than two bins are left out."""
    by_cond: dict = {}
    for r in rows:
        if r["face_px"] is not None:
            by_cond.setdefault(r["_cond"], []).append(r)
    out: dict = {}
    for cond, rs in by_cond.items():
        labels, which = face_bins([r["face_px"] for r in rs])
        if len(labels) < 2:
            continue
        acc: dict = {}
        for r in rs:
            acc.setdefault((r["setting"], r["detector"]), {}).setdefault(which(r["face_px"]), []).append(r)
        out[cond] = {}
        for key, bins in acc.items():
            for b, brs in sorted(bins.items()):
                brs = sorted(brs, key=lambda r: (r["image"], r["config_hash"]))
                tp = np.array([r["tp"] for r in brs], dtype=np.float64)
                n = np.array([r["n_gt"] for r in brs], dtype=np.float64)
                if n.sum() == 0:
                    continue
                out[cond].setdefault(key, {})[b] = (tp.sum() / n.sum(), *bootstrap_ratio(tp, n, seed=seed), len(brs))
    return out


# --------------------------------------------------------------------------------------------------------- figures
def _figure(w: float, h: float):
    from matplotlib.figure import Figure

    return Figure(figsize=(w, h), layout="constrained")


def svg_uri(fig) -> str:
    """The figure as an SVG ``data:`` URL (text kept as text: no embedded or fetched font; no date in it), or as a
    PNG (:data:`PNG_DPI`) when the SVG would exceed :data:`MAX_SVG_BYTES` (many small multiples)."""
    import matplotlib

    buf = io.BytesIO()
    with matplotlib.rc_context({"svg.fonttype": "none", "svg.hashsalt": "anonlab"}):
        fig.savefig(buf, format="svg", metadata={"Date": None})
    if buf.tell() <= MAX_SVG_BYTES:
        return "data:image/svg+xml;base64," + base64.b64encode(buf.getvalue()).decode("ascii")
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=PNG_DPI, metadata={"Software": None})
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode("ascii")


def _plot(fig, key: str, caption: str) -> str:
    return (f'<figure class="plot" {_attrs(plot=key)}><img alt="{html.escape(caption)}" src="{svg_uri(fig)}">'
            f"<figcaption>{html.escape(caption)}</figcaption></figure>")


def _colors(n: int) -> list:
    import matplotlib

    cmap = matplotlib.colormaps["tab10" if n <= 10 else "tab20"]
    return [cmap(i % cmap.N) for i in range(n)]


def _grid(n: int, per_row: int = 5) -> tuple[int, int]:
    cols = min(n, per_row)
    return (n + cols - 1) // cols, cols


def curve_figure(panels: list[tuple[str, list[str], dict[str, list[tuple]]]], ylabel: str):
    """Small multiples, one panel per defense: ``(title, tick labels, {line name: [(x, y, lo, hi), ...]})``; the
    band is the 95 % interval where one is known."""
    names = _order(n for _, _, lines in panels for n in lines)
    colors = dict(zip(names, _colors(len(names))))
    nr, nc = _grid(len(panels))
    fig = _figure(2.7 * nc + 1.6, 2.5 * nr + 0.3)
    axes = fig.subplots(nr, nc, squeeze=False, sharey=True)
    for ax in axes.flat[len(panels):]:
        ax.set_visible(False)
    for ax, (title, ticks, lines) in zip(axes.flat, panels):
        for name, pts in lines.items():
            pts = [p for p in pts if _known(p[1])]  # None: no value; NaN: not measurable
            if not pts:
                continue
            x = [p[0] for p in pts]
            ax.plot(x, [p[1] for p in pts], "o-", ms=3, lw=1.3, color=colors[name], label=name)
            band = [(p[0], p[2], p[3]) for p in pts if _known(p[2]) and _known(p[3])]
            if band:
                ax.fill_between([b[0] for b in band], [b[1] for b in band], [b[2] for b in band],
                                color=colors[name], alpha=0.15, lw=0)
        ax.set_title(title, fontsize=9)
        ax.set_xticks(range(len(ticks)), ticks, rotation=35, ha="right", fontsize=7)
        ax.set_ylim(-0.03, 1.03)
        ax.grid(alpha=0.3)
        ax.tick_params(axis="y", labelsize=7)
    for row in axes:
        row[0].set_ylabel(ylabel, fontsize=8)
    handles = [h for ax in axes.flat for h in ax.get_lines()]
    uniq = {h.get_label(): h for h in handles}
    fig.legend(uniq.values(), uniq.keys(), loc="outside right upper", fontsize=7, frameon=False)
    return fig


def _percent_bar(bar, label: str) -> None:
    from matplotlib.ticker import PercentFormatter

    bar.ax.yaxis.set_major_formatter(PercentFormatter(1.0))
    bar.ax.tick_params(labelsize=7)
    bar.set_label(label, fontsize=7)


def _heat(ax, values: np.ndarray, rows: list[str], cols: list[str], rotation: int, annotate: bool):
    """Draw ``values`` in [0, 1] (NaN: blank) on ``ax`` with one fixed red-to-green scale, labels, and (when
    ``annotate``) each known cell's value in percent; returns the image for the colour bar."""
    im = ax.imshow(np.ma.masked_invalid(values), vmin=0, vmax=1, cmap="RdYlGn_r", aspect="auto")
    ax.set_xticks(range(len(cols)), cols, rotation=rotation, ha="right", fontsize=7)
    ax.set_yticks(range(len(rows)), rows, fontsize=7)
    if annotate:
        for (i, j), v in np.ndenumerate(values):
            if _known(v):
                ax.text(j, i, f"{100 * v:.0f}", ha="center", va="center", fontsize=6,
                        color="white" if v > 0.75 or v < 0.15 else "black")
    return im


def heatmap_figure(values: np.ndarray, rows: list[str], cols: list[str], title: str, cbar: str):
    """``values`` (len(rows), len(cols)) in [0, 1] (NaN: no value), annotated in percent."""
    fig = _figure(1.0 + 0.75 * len(cols) + 2.2, 0.8 + 0.24 * len(rows))
    ax = fig.add_subplot()
    im = _heat(ax, values, rows, cols, 35, annotate=values.size <= 600)
    ax.set_title(title, fontsize=9)
    _percent_bar(fig.colorbar(im, ax=ax, fraction=0.04), cbar)
    return fig


# -------------------------------------------------------------------------------------------------------- sections
def _esc(s: Any) -> str:
    return html.escape(str(s))


def _skip(text: str) -> str:
    return f'<p class="skip">{_esc(text)}</p>'


def _detection_table(cid: str, cells: list[dict], settings: list[str], dets: list[str]) -> str:
    by = {(c["setting"], c["detector"]): c for c in cells}
    kinds = {c["detector"]: c["detector_kind"] for c in cells}
    out = ['<table class="recall"><tr><th>setting</th>'
           + "".join(f"<th>{_esc(d)}<br><small>{_esc(kinds[d])}</small></th>" for d in dets) + "</tr>"]
    for s in settings:
        tds = []
        for d in dets:
            c = by.get((s, d))
            if c is None:
                tds.append("<td></td>")
                continue
            tds.append(_td(_ci(c["recall"], c["recall_lo"], c["recall_hi"]), _cls(c["recall"]) if s != "none" else "n",
                           section="detection", condition=cid, setting=s, detector=d, metric="recall",
                           value=c["recall"], lo=c["recall_lo"], hi=c["recall_hi"], n_images=c["n_images"],
                           n_gt=c["n_gt"], disappearance=c["disappearance"], config_hash=c["config_hash"]))
        out.append(f"<tr><th>{_esc(s)}</th>{''.join(tds)}</tr>")
    return "\n".join(out) + "</table>"


def detection_sections(inp: Inputs, cells: list[dict]) -> tuple[str, str, str]:
    """(curves html, heatmap html, face-height html) for the detection rows."""
    if not cells:
        msg = _skip("No detection results (results.parquet from anonlab bench) in the given folders: section skipped.")
        return msg, msg, msg
    conds = _order(c["cond"] for c in cells)
    curves, heat = [], []
    for k, cond in enumerate(conds):
        cid = f"c{k + 1}"
        cc = [c for c in cells if c["cond"] == cond]
        settings = _order(c["setting"] for c in cc)
        dets = _order(c["detector"] for c in cc)
        by = {(c["setting"], c["detector"]): c for c in cc}
        label = cond_label(cond)
        n_img = max(c["n_images"] for c in cc)
        pseudo = " Ground truth is pseudo (detector consensus) for some kinds." if any(c["pseudo_gt"] for c in cc) else ""
        defenses = _order(c["defense"] for c in cc if c["defense"] != "none")
        panels = []
        for dfn in defenses:
            ss = _order((c["setting"], c["params"]) for c in cc if c["defense"] == dfn)
            ticks = ["clean", *strength_ticks(ss)]
            seq = ["none", *[s for s, _ in ss]]
            lines = {d: [(x, by[(s, d)]["recall"], by[(s, d)]["recall_lo"], by[(s, d)]["recall_hi"])
                         for x, s in enumerate(seq) if (s, d) in by] for d in dets}
            panels.append((dfn, ticks, lines))
        head = (f'<h3 {_attrs(condition=cid)}>{_esc(label)}</h3><p class="note">{n_img} images.{_esc(pseudo)}</p>')
        if panels:
            fig = curve_figure(panels, "recall")
            curves.append(head + _plot(fig, f"curves:{cid}", f"Detection recall against defense strength, per "
                                       f"defense and detector ({label}); bands: 95 % bootstrap interval over images."))
        else:
            curves.append(head + _skip("Only the clean baseline: no defense to draw against strength."))
        vals = np.array([[np.nan if (c := by.get((s, d))) is None or c["recall"] is None else c["recall"]
                          for d in dets] for s in settings], dtype=float)
        fig = heatmap_figure(vals, settings, dets, label, "recall")
        heat.append(head + _plot(fig, f"heatmap:{cid}", f"Recall (%) per defense setting and detector ({label}).")
                    + _detection_table(cid, cc, settings, dets))
    face = face_section(inp, cells, conds)
    return "\n".join(curves), "\n".join(heat), face


def face_section(inp: Inputs, cells: list[dict], conds: list[tuple]) -> str:
    cond_of = {c["config_hash"]: c["cond"] for c in cells}
    rows = [{**r, "_cond": cond_of[r["config_hash"]]} for r in inp.results]
    table = recall_by_face(rows)
    if not table:
        return _skip("Every condition has a single face height (run `anonlab bench -m experiment=face_size` for a "
                     "sweep): recall against face height skipped.")
    out = []
    for k, cond in enumerate(conds):
        if cond not in table:
            continue
        cid = f"c{k + 1}"
        per = table[cond]
        settings = _order(s for s, _ in per)
        if len(settings) > MAX_FACE_PANELS:  # clean + the last (strongest in sweep order) setting of each defense
            last = {c["defense"]: c["setting"] for c in cells if c["cond"] == cond}
            settings = [s for s in settings if s == "none" or s in last.values()]
        dets = _order(d for _, d in per)
        bins = sorted({b for v in per.values() for b in v})
        panels = []
        for s in settings:
            lines = {d: [(bins.index(b), v[0], v[1], v[2]) for b, v in sorted(per.get((s, d), {}).items())]
                     for d in dets}
            panels.append((s, [f"{b:g}" for b in bins], lines))
        fig = curve_figure(panels, "recall")
        rows_html = []
        for s in settings:
            for d in dets:
                vals = per.get((s, d))
                if not vals:
                    continue
                tds = "".join(
                    _td(_pct(v[0]), section="face_px", condition=cid, setting=s, detector=d, face_px=b,
                        metric="recall", value=v[0], lo=v[1], hi=v[2], n_images=v[3])
                    if (v := vals.get(b)) else "<td></td>" for b in bins)
                rows_html.append(f"<tr><th>{_esc(s)}</th><th>{_esc(d)}</th>{tds}</tr>")
        out.append(f"<h3>{_esc(cond_label(cond))}</h3>"
                   + _plot(fig, f"face_px:{cid}", "Recall against face height (px, median annotated face per image; "
                           "x: bins) per setting and detector; bands: 95 % bootstrap interval over images.")
                   + "<details><summary>numbers (recall %)</summary><table><tr><th>setting</th><th>detector</th>"
                   + "".join(f"<th>{b:g} px</th>" for b in bins) + "</tr>" + "".join(rows_html) + "</table></details>")
    return "\n".join(out)


def heatmaps_figure(panels: list[tuple[str, np.ndarray, list[str], list[str]]], cbar: str):
    """Small multiples of :func:`heatmap_figure`: ``(title, values, row labels, column labels)`` per panel, one
    colour scale (0–100 %) for all."""
    nr, nc = _grid(len(panels), 3)
    n_rows = max(len(p[2]) for p in panels)
    n_cols = max(len(p[3]) for p in panels)
    fig = _figure(nc * (2.6 + 0.7 * n_cols) + 0.8, nr * (1.3 + 0.26 * n_rows))
    axes = fig.subplots(nr, nc, squeeze=False)
    for ax in axes.flat[len(panels):]:
        ax.set_visible(False)
    im = None
    for k, (ax, (title, values, rows, cols)) in enumerate(zip(axes.flat, panels)):
        im = _heat(ax, values, rows if k % nc == 0 else [""] * len(rows), cols, 30, annotate=True)
        ax.set_title(title, fontsize=8)
    _percent_bar(fig.colorbar(im, ax=axes, fraction=0.03), cbar)
    return fig


def patch_section(inp: Inputs) -> str:
    if not inp.patch_evals:
        return _skip("No patch evaluation (patch_eval.json from anonlab patch eval) in the given folders: "
                     "section skipped.")
    out = []
    for n, (path, data) in enumerate(inp.patch_evals):
        rows = data["rows"]
        panels, tables = [], []
        for cond in _order(r["condition"] for r in rows):
            sub = [r for r in rows if r["condition"] == cond]
            dets = _order(r["detector"] for r in sub)
            sets = _order(r["setting"] for r in sub)
            short = {r["setting"]: r["short"] + (f" (trained on {r['trained_on']})" if r["trained_on"] else "")
                     for r in sub}
            by = {(r["setting"], r["detector"]): r for r in sub}
            vals = np.array([[np.nan if (r := by.get((s, d))) is None or r["recall"] is None else r["recall"]
                              for d in dets] for s in sets], dtype=float)
            pid = f"p{n + 1}:{cond}"
            panels.append((cond, vals, [short[s] for s in sets], dets))
            trs = []
            for s in sets:
                tds = []
                for d in dets:
                    r = by.get((s, d))
                    if r is None:
                        tds.append("<td></td>")
                        continue
                    tds.append(_td(_ci(r["recall"], r["recall_lo"], r["recall_hi"], 1), _cls(r["recall"]),
                                   section="patch", condition=pid, setting=s, detector=d,
                                   trained_on=r["trained_on"] or "", metric="recall", value=r["recall"],
                                   lo=r["recall_lo"], hi=r["recall_hi"], n_images=r["n_images"],
                                   disappearance=r.get("disappearance")))
                trs.append(f"<tr><th>{_esc(short[s])}</th>{''.join(tds)}</tr>")
            n_img = max(r["n_images"] for r in sub)
            tables.append(f"<h3>{_esc(cond)} <small>({n_img} held-out images)</small></h3><table><tr><th>setting</th>"
                          + "".join(f"<th>{_esc(d)}</th>" for d in dets) + "</tr>" + "".join(trs) + "</table>")
        out.append(f"<p class=\"note\"><code>{_esc(path)}</code></p>"
                   + _plot(heatmaps_figure(panels, "person recall"), f"patch:p{n + 1}",
                           "Patch transfer: person recall (%) of each detector (columns) with each patch (and the "
                           "detector it was trained on) and its noise and grey controls, per condition.")
                   + "".join(tables))
    return "\n".join(out)


IDENTITY_METRICS = ("accuracy", "auc", "tar_at_far_1e-2", "rank1", "rank5")


def _id_label(r: dict, labels: dict[tuple[str, str], str]) -> str:
    """The identity row's setting label (its own ``setting`` column where it has one)."""
    if r.get("setting"):
        return r["setting"]
    key = (r["defense"], canonical(r["params"]))
    if key in labels:
        return labels[key]
    p = _params(r["params"])
    return r["defense"] if not p else f"{r['defense']}({','.join(f'{k}={v}' for k, v in p.items())})"


def identity_sections(inp: Inputs, cells: list[dict]) -> tuple[str, str]:
    """(identification curves html, leakage tables html)."""
    if not inp.identity:
        msg = _skip("No identity rows (identity.parquet) in the given folders: identification curves and leakage "
                    "tables skipped.")
        return msg, msg
    labels = {(c["defense"], c["params"]): c["setting"] for c in cells}
    groups = _order((r["dataset"], r["recognizer"]) for r in inp.identity)
    curves, tables = [], []
    for k, (ds, rec) in enumerate(groups):
        gid = f"i{k + 1}"
        rs = [r for r in inp.identity if r["dataset"] == ds and r["recognizer"] == rec]
        metric = "rank1" if any(_known(r["rank1"]) for r in rs) else "accuracy"
        advs = _order(r["adversary"] for r in rs)
        panels = []
        for dfn in _order(r["defense"] for r in rs if r["defense"] != "none"):
            ss = _order((_id_label(r, labels), canonical(r["params"])) for r in rs if r["defense"] == dfn)
            seq = [None, *ss]
            lines = {}
            for a in advs:
                pts = []
                for x, s in enumerate(seq):
                    r = next((r for r in rs if r["adversary"] == a and (
                        r["defense"] == "none" if s is None else
                        (r["defense"] == dfn and canonical(r["params"]) == s[1]))), None)
                    if r is not None:
                        pts.append((x, r[metric], r.get(f"{metric}_lo"), r.get(f"{metric}_hi")))
                lines[a] = pts
            panels.append((dfn, ["clean", *strength_ticks(ss)], lines))
        title = f"{ds} · recognizer {rec}"
        if panels:
            curves.append(f"<h3>{_esc(title)}</h3>" + _plot(
                curve_figure(panels, metric), f"identity:{gid}",
                f"Identification ({metric}) per attacker against defense strength ({title}); bands: the rows' 95 % "
                f"interval where given."))
        ci = [m for m in IDENTITY_METRICS if any(f"{m}_lo" in r for r in rs)]
        trs = []
        for r in rs:
            s = "none" if r["defense"] == "none" else _id_label(r, labels)
            key = {"section": "identity", "group": gid, "setting": s, "adversary": r["adversary"]}
            tds = [_td(str(r[m]), metric=m, value=r[m], **key) for m in ("n_pairs", "n_not_embedded")]
            for m in IDENTITY_METRICS:
                lo, hi = r.get(m + "_lo"), r.get(m + "_hi")
                text = _ci(r[m], lo, hi, 1) if m in ci else _pct(r[m], 1)
                tds.append(_td(text, metric=m, value=r[m], lo=lo, hi=hi, **key))
            trs.append(f"<tr><th>{_esc(s)}</th><th>{_esc(r['adversary'])}</th>{''.join(tds)}</tr>")
        tables.append(f"<h3>{_esc(title)}</h3><table><tr><th>setting</th><th>adversary</th><th>pairs</th>"
                      "<th>not embedded</th>" + "".join(f"<th>{m} (%)</th>" for m in IDENTITY_METRICS) + "</tr>"
                      + "".join(trs) + "</table>")
    return "\n".join(curves), "\n".join(tables)


def leaks_section(inp: Inputs) -> str:
    if not inp.leaks:
        return _skip("No redaction verification (leaks.json from anonlab redact) in the given folders: section skipped.")
    out = []
    for path, leaks in inp.leaks:
        out.append(f'<h3>{_esc(path)}</h3><p {_attrs(section="leaks", file=str(path), metric="n_leaks", value=len(leaks))}>'
                   f"{len(leaks)} leak(s) found by the verification panel.</p>")
        if leaks:
            keys = _order(k for x in leaks for k in x)
            out.append("<table><tr>" + "".join(f"<th>{_esc(k)}</th>" for k in keys) + "</tr>" + "".join(
                "<tr>" + "".join(f"<td>{_esc(x.get(k, ''))}</td>" for k in keys) + "</tr>" for x in leaks[:200])
                + "</table>" + (f'<p class="note">first 200 of {len(leaks)}</p>' if len(leaks) > 200 else ""))
    return "\n".join(out)


def _yaml_items(data: Any, prefix: str = "") -> list[tuple[str, Any]]:
    if isinstance(data, dict):
        out = []
        for k, v in data.items():
            out += _yaml_items(v, f"{prefix}{k}.")
        return out
    return [(prefix.rstrip("."), data)]


def _img_uri(path: Path) -> str:
    mime = {".png": "png", ".jpg": "jpeg", ".jpeg": "jpeg", ".webp": "webp"}[path.suffix.lower()]
    return f"data:image/{mime};base64," + base64.b64encode(path.read_bytes()).decode("ascii")


def _evidence(rec: dict) -> str:
    """recommend.json's candidates (weakest first) x adversaries: rate [95 % interval] against the bound."""
    cands = rec.get("candidates") or []
    if not cands:
        return ""
    advs = _order(a["name"] for c in cands for a in c.get("adversaries") or [])
    pick = rec.get("recommended_setting")
    trs = []
    for c in cands:
        by = {a["name"]: a for a in c.get("adversaries") or []}
        tds = []
        for name in advs:
            a = by.get(name)
            if a is None:
                tds.append("<td></td>")
                continue
            text = f"{a.get('k')}/{a.get('n')} [{_pct(a.get('lo'))}–{_pct(a.get('hi'))}] ≤ {_pct(a.get('bound'))}"
            tds.append(_td(text, "n hid" if a.get("passed") else "n vis", section="recommend", setting=c["setting"],
                           adversary=name, metric=a.get("kind", "rate"), value=a.get("value"), lo=a.get("lo"),
                           hi=a.get("hi"), bound=a.get("bound"), k=a.get("k"), n=a.get("n")))
        mark = " ◀ recommended" if c["setting"] == pick else ""
        trs.append(f"<tr><th>{_esc(c['setting'])}{mark}</th><td class=\"n\">{_esc(c.get('pixel_change'))}</td>"
                   f"{''.join(tds)}<td>{'yes' if c.get('passed') else 'no'}</td></tr>")
    return ("<details><summary>evidence: every candidate, weakest first (found or identified / faces, "
            "[95 % interval] ≤ bound on its upper end, %)</summary><table><tr><th>setting</th><th>Δpx</th>"
            + "".join(f"<th>{_esc(a)}</th>" for a in advs) + "<th>passes</th></tr>" + "".join(trs)
            + "</table></details>")


def recommend_section(inp: Inputs) -> str:
    if not inp.recommends:
        return ""
    out = []
    for folder, data, thumbs in inp.recommends:
        rec, preset = data.get("json") or {}, data.get("yaml")
        pick = rec.get("recommended_setting")
        facts = [("threat", rec.get("threat")), ("recommended_setting", pick),
                 ("weakest_passing_setting", rec.get("weakest_passing_setting")), ("why", rec.get("why")),
                 ("advice", rec.get("advice") if not pick else None), ("n_frames", rec.get("n_frames")),
                 ("n_faces", rec.get("n_faces"))]
        facts += [(f"preset.{k}", v) for k, v in _yaml_items(preset)[:40]] if preset else []
        rows = "".join(f'<tr><th>{_esc(k)}</th><td {_attrs(section="recommend", key=k, value=v if isinstance(v, str) else json.dumps(v))}>'
                       f"{_esc(v)}</td></tr>" for k, v in facts if v not in (None, ""))
        verdict = (f"<p><b>Use {_esc(pick)}</b> (<code>anonlab redact --preset {_esc(folder / 'recommend.yaml')}"
                   f"</code> takes it unchanged).</p>" if pick and preset is not None else
                   f"<p><b>No setting qualifies:</b> {_esc(rec.get('why', ''))}. {_esc(rec.get('advice', ''))}.</p>"
                   if rec else "")
        imgs = "".join(f'<figure><img alt="before" src="{_img_uri(b)}"><figcaption>{_esc(Path(fr).name)} before</figcaption>'
                       f'</figure><figure><img alt="after" src="{_img_uri(a)}"><figcaption>after</figcaption></figure>'
                       for fr, b, a in thumbs[:12])
        note = ("Faces are pseudo ground truth (a detector panel's consensus on the clean frames). " if
                rec.get("pseudo_gt") else "") + (f"Intervals: {rec['interval']}." if rec.get("interval") else "")
        out.append(f'<div class="box" {_attrs(section_id="recommend")}><h2 id="recommend">Which setting should I '
                   f"use?</h2><p class=\"note\">From <code>{_esc(folder)}</code> (anonlab recommend). {_esc(note)}</p>"
                   f"{verdict}<table>{rows}</table>" + (f'<div class="thumbs">{imgs}</div>' if imgs else "")
                   + _evidence(rec) + "</div>")
    return "\n".join(out)


def metadata_section(inp: Inputs, cells: list[dict]) -> str:
    if not inp.runs:
        return _skip("No run.json beside the results: run metadata skipped.")
    rows = []
    for path, run in inp.runs:
        fails = run.get("failures") or []
        pk = ", ".join(f"{k} {v}" for k, v in (run.get("packages") or {}).items())
        key = {"section": "meta", "run": str(path.parent)}
        device = run.get("device", "") + ("" if run.get("device_name") in (None, run.get("device")) else
                                          f" {run.get('device_name')}")
        rows.append(
            f"<tr><td><code>{_esc(path.parent)}</code></td>"
            + _td(_esc(run.get("anonlab", "")), "", metric="anonlab", value=str(run.get("anonlab", "")), **key)
            + f"<td><code>{_esc(str(run.get('git_sha', ''))[:10])}</code>{' (dirty)' if run.get('git_dirty') else ''}</td>"
            + f"<td>{_esc(device)}</td>"
            + _td(_esc(run.get("seed")), metric="seed", value=run.get("seed"), **key)
            + _td(_esc(run.get("n_images")), metric="n_images", value=run.get("n_images"), **key)
            + f'<td class="n">{_esc(run.get("wall_time_s"))}</td><td><code>{_esc(run.get("job_hash", ""))}</code></td>'
            + _td(str(len(fails)), metric="n_failures", value=len(fails), **key)
            + f"<td><small>{_esc(run.get('python', ''))}; {_esc(pk)}</small></td></tr>")
    fail_rows = "".join(f"<tr><td><code>{_esc(p.parent)}</code></td><td>{_esc(f)}</td></tr>"
                        for p, run in inp.runs for f in (run.get("failures") or [])[:100])
    hashes = "".join(f"<tr><td>{_esc(cond_label(c['cond']))}</td><td>{_esc(c['setting'])}</td><td>{_esc(c['detector'])}"
                     f"</td><td><code>{_esc(c['config_hash'])}</code></td></tr>" for c in cells)
    return ("<table><tr><th>run</th><th>anonlab</th><th>git</th><th>device</th><th>seed</th><th>images</th>"
            "<th>wall s</th><th>job hash</th><th>failures</th><th>versions</th></tr>" + "".join(rows) + "</table>"
            + (f"<h3>Failures</h3><table>{fail_rows}</table>" if fail_rows else "<p>No failed images.</p>")
            + (f"<details><summary>config hashes ({len(cells)})</summary><table><tr><th>condition</th><th>setting"
               f"</th><th>detector</th><th>config_hash</th></tr>{hashes}</table></details>" if cells else ""))


def thumbs_section(inp: Inputs, cells: list[dict]) -> str:
    from anonlab.report.thumbs import face_row

    row = face_row(inp, cells)
    if isinstance(row, str):
        return _skip(row)
    caption, items = row
    figs = "".join(f'<figure {_attrs(section="thumb", setting=label)}><img alt="{_esc(label)}" '
                   f'src="data:image/jpeg;base64,{base64.b64encode(jpg).decode("ascii")}"><figcaption>{_esc(label)}'
                   f"</figcaption></figure>" for label, jpg in items)
    return f'<p class="note">{_esc(caption)}</p><div class="thumbs">{figs}</div>'


# ------------------------------------------------------------------------------------------------------ page, md
def build(inp: Inputs, title: str) -> tuple[str, str]:
    """(HTML page, Markdown summary) of ``inp``."""
    import matplotlib

    cells = detection_cells(inp.results)
    with matplotlib.rc_context({"font.family": "DejaVu Sans", "font.size": 8}):
        curves, heat, face = detection_sections(inp, cells)
        id_curves, id_tables = identity_sections(inp, cells)
        patch = patch_section(inp)
    sections = [
        ("curves", "Privacy–utility curves: detection recall against strength", curves),
        ("identification", "Identification per attacker against strength", id_curves),
        ("heatmap", "Defense × detector", heat),
        ("face-px", "Recall against face height", face),
        ("patch", "Patch transfer matrix", patch),
        ("identity", "Identity leakage", id_tables),
        ("thumbnails", "One face under every setting", thumbs_section(inp, cells)),
        ("leaks", "Redaction verification", leaks_section(inp)),
        ("metadata", "Run metadata", metadata_section(inp, cells)),
    ]
    now = _dt.datetime.now(_dt.UTC).strftime("%Y-%m-%d %H:%M UTC")
    nav = " · ".join(f'<a href="#{sid}">{_esc(t.split(":")[0])}</a>' for sid, t, _ in sections)
    body = "\n".join(f'<section id="{sid}" {_attrs(section_id=sid)}><h2>{_esc(t)}</h2>\n{content}\n</section>'
                     for sid, t, content in sections)
    srcs = ", ".join(f"<code>{_esc(p)}</code>" for p in inp.paths)
    page = (f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8"><title>{_esc(title)}</title>'
            f'<meta name="viewport" content="width=device-width, initial-scale=1"><style>{CSS}</style></head><body>'
            f"<h1>{_esc(title)}</h1><p class=\"note\">Generated {now} from {srcs}: {len(inp.results)} detection rows, "
            f"{len(inp.identity)} identity rows, {len(inp.patch_evals)} patch evaluation(s), {len(inp.leaks)} "
            f"verification(s).</p><nav>{nav}</nav>{recommend_section(inp)}\n{body}\n</body></html>\n")
    return page, markdown(inp, cells, title)


def markdown(inp: Inputs, cells: list[dict], title: str) -> str:
    """The CI summary: recall per condition (setting x detector, % [95 % interval]), patch transfer, identity
    leakage, leaks and the recommendation, as Markdown tables."""
    out = [f"# {title}\n"]
    conds = _order(c["cond"] for c in cells)
    for cond in conds:
        cc = [c for c in cells if c["cond"] == cond]
        dets = _order(c["detector"] for c in cc)
        by = {(c["setting"], c["detector"]): c for c in cc}
        out += [f"\n## Recall (%) [95 % CI]: {cond_label(cond)}\n", "| setting | " + " | ".join(dets) + " |",
                "|---|" + "---:|" * len(dets)]
        for s in _order(c["setting"] for c in cc):
            out.append(f"| {s} | " + " | ".join(
                "" if (c := by.get((s, d))) is None else
                _ci(c["recall"], c["recall_lo"], c["recall_hi"])
                for d in dets) + " |")
    for path, data in inp.patch_evals:
        for cond in _order(r["condition"] for r in data["rows"]):
            sub = [r for r in data["rows"] if r["condition"] == cond]
            dets = _order(r["detector"] for r in sub)
            out += [f"\n## Patch transfer, {cond} ({path})\n", "| setting | trained on | " + " | ".join(dets) + " |",
                    "|---|---|" + "---:|" * len(dets)]
            for s in _order(r["setting"] for r in sub):
                rs = {r["detector"]: r for r in sub if r["setting"] == s}
                first = next(iter(rs.values()))
                out.append(f"| {first['short']} | {first['trained_on'] or '-'} | " + " | ".join(
                    _pct(rs[d]["recall"], 1) if d in rs else "" for d in dets) + " |")
    if inp.identity:
        out += ["\n## Identity leakage (%)\n", "| dataset | recognizer | setting | adversary | pairs | not embedded | "
                + " | ".join(IDENTITY_METRICS) + " |", "|---|---|---|---|---:|---:|" + "---:|" * len(IDENTITY_METRICS)]
        labels = {(c["defense"], c["params"]): c["setting"] for c in cells}
        for r in inp.identity:
            out.append(f"| {r['dataset']} | {r['recognizer']} | {_id_label(r, labels)} | {r['adversary']} | "
                       f"{r['n_pairs']} | {r['n_not_embedded']} | "
                       + " | ".join(_pct(r[m], 1) for m in IDENTITY_METRICS) + " |")
    for path, leaks in inp.leaks:
        out.append(f"\n**Redaction verification** `{path}`: {len(leaks)} leak(s).")
    for folder, data, _ in inp.recommends:
        rec = data.get("json") or {}
        out.append(f"\n## Which setting should I use? (`{folder}`)\n")
        out.append(f"- threat: {rec.get('threat')}\n- recommended: {rec.get('recommended_setting') or 'none qualifies'}"
                   f"\n- why: {rec.get('why')}" + ("" if rec.get("recommended_setting") else f"\n- advice: {rec.get('advice')}"))
        out += [f"- preset {k}: {v}" for k, v in _yaml_items(data.get("yaml"))[:30]] if data.get("yaml") else []
    fails = sum(len(run.get("failures") or []) for _, run in inp.runs)
    out.append(f"\n{len(inp.runs)} run(s), {fails} failed image(s).")
    return "\n".join(out) + "\n"


def _atomic_text(files: list[tuple[Path, str]]) -> None:
    """Write every ``(path, text)`` under a temporary name in its folder, then rename all
    (:func:`anonlab.io.atomic.atomic_path`): nothing half-written, and nothing renamed unless every write succeeded."""
    import contextlib

    from anonlab.io.atomic import atomic_path

    with contextlib.ExitStack() as stack:
        for path, text in files:
            stack.enter_context(atomic_path(path)).write_text(text, encoding="utf-8")


def write_report(paths: list[str | os.PathLike], html_out: str | os.PathLike | None,
                 md_out: str | os.PathLike | None = None, title: str | None = None) -> tuple[Path | None, Path | None]:
    """Read every input under ``paths`` (:func:`anonlab.report.inputs.collect`), render, and write the HTML page
    to ``html_out`` and the Markdown summary to ``md_out`` (default: beside the page, ``.md``), atomically.

    Raises :class:`ReportInputError` (one line; nothing written) for bad input. Returns the written paths."""
    inp = collect(paths)
    page, md = build(inp, title or "anonlab report: " + ", ".join(str(p) for p in inp.paths))
    html_path = Path(html_out) if html_out is not None else None
    md_path = Path(md_out) if md_out is not None else (html_path.with_suffix(".md") if html_path else None)
    _atomic_text([(p, t) for p, t in ((html_path, page), (md_path, md)) if p is not None])
    return html_path, md_path
