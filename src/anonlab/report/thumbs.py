"""The report's thumbnail row: one face under every defense setting of a run.

Only the embedded default dataset (public photos that the installed dependencies ship) or the user's own data
(``dataset=folder`` / ``dataset=video``) are drawn: a run on a research dataset gets a one-line note instead, so its
frames never end up in a page that might be shared. The page is written where the user asks (the run folder),
never into the repository. Unlike the rest of :mod:`anonlab.report`, this reads a frame again (through the
run's own dataset config from run.json) and applies each setting's defense (built from its registry config and
the params stored in the results) to the chosen face's ground-truth box.
"""

from __future__ import annotations

import io
import json
from pathlib import Path

from anonlab.report.inputs import Inputs

#: dataset classes whose frames may be shown (public default photos, or the user's own footage)
ALLOWED = ("anonlab.datasets.default.DefaultDataset", "anonlab.datasets.folder.FolderDataset",
           "anonlab.datasets.video.VideoDataset")
#: thumbnail height in pixels; the crop is the face box grown by MARGIN of its size on each side
HEIGHT, MARGIN = 96, 0.35


def _face(result_file: Path) -> tuple[str, list[float]] | None:
    """(image id, xyxy box) of the largest ground-truth face in the clean rows of ``result_file``."""
    import pyarrow.parquet as pq

    t = pq.read_table(result_file, columns=["image", "gt_boxes", "gt_ignore", "detector_kind", "setting", "camera"],
                      filters=[("setting", "=", "none"), ("detector_kind", "=", "face"), ("camera", "=", "none")])
    best = None
    for r in t.to_pylist():
        b = r["gt_boxes"] or []
        for i in range(0, len(b), 4):
            if r["gt_ignore"] and r["gt_ignore"][i // 4]:
                continue
            area = (b[i + 2] - b[i]) * (b[i + 3] - b[i + 1])
            if best is None or area > best[0]:
                best = (area, r["image"], b[i:i + 4])
    return None if best is None else (best[1], best[2])


def face_row(inp: Inputs, cells: list[dict]) -> tuple[str, list[tuple[str, bytes]]] | str:
    """(caption, [(setting label, JPEG bytes)]) for the first run whose dataset may be shown, or one line saying
    why no row is drawn."""
    import torch
    from omegaconf import OmegaConf
    from PIL import Image

    from anonlab.build import build_config, group_config
    from anonlab.defenses import DEFENSES
    from anonlab.types import Detections

    reasons = []
    for f in inp.result_files:
        run_dir = f.parent if f.name == "results.parquet" else f.parent.parent.parent
        run = next((r for p, r in inp.runs if p.parent == run_dir), None)
        ds_cfg = ((run or {}).get("config") or {}).get("dataset") or {}
        target = ds_cfg.get("_target_", "")
        if target not in ALLOWED:
            reasons.append(target or f"{f} (no run.json)")
            continue
        face = _face(f)
        if face is None:
            reasons.append(f"{f}: no annotated face on an uncaptured clean frame")
            continue
        image_id, box = face
        try:
            dataset = build_config(OmegaConf.create(ds_cfg), "dataset")
            frame = dataset.load(dataset.refs().index(image_id)).image.cpu()
        except (ValueError, FileNotFoundError, OSError) as e:
            reasons.append(f"{image_id}: {e}")
            continue
        settings = {}
        for c in cells:
            if c["setting"] not in settings and c["cond"][1] == "none":
                settings[c["setting"]] = (c["defense"], c["params"])
        h, w = frame.shape[-2:]
        x1, y1, x2, y2 = box
        mx, my = MARGIN * (x2 - x1), MARGIN * (y2 - y1)
        crop = (max(0, int(x1 - mx)), max(0, int(y1 - my)), min(w, int(x2 + mx + 1)), min(h, int(y2 + my + 1)))
        regions = Detections(torch.tensor([box], dtype=torch.float32), torch.ones(1), torch.zeros(1, dtype=torch.int64),
                             torch.zeros(1, dtype=torch.int64))
        items, skipped = [], []
        for label, (name, params) in settings.items():
            try:
                base = group_config("defense", name, DEFENSES)
                given = json.loads(params)
                # results store every non-None parameter (DefenseBase.params): a config key left out was None
                # (e.g. sigma when the setting gave sigma_rel)
                spec = OmegaConf.merge(base, {k: None for k in base if k != "_target_" and k not in given}, given)
                defense = build_config(spec, "defense")
                if getattr(defense, "worn", False):
                    skipped.append(f"{label} (worn in the scene, not a redaction)")
                    continue
                with torch.inference_mode():
                    out = defense(frame[None], regions)[0]
            except (ValueError, TypeError, FileNotFoundError, RuntimeError) as e:
                skipped.append(f"{label} ({str(e).splitlines()[0]})")
                continue
            img = Image.fromarray(out[:, crop[1]:crop[3], crop[0]:crop[2]].permute(1, 2, 0).numpy())
            img = img.resize((max(1, round(img.width * HEIGHT / img.height)), HEIGHT), Image.Resampling.LANCZOS)
            buf = io.BytesIO()
            img.save(buf, format="JPEG", quality=90)
            items.append((label, buf.getvalue()))
        caption = (f"{image_id} ({target.rsplit('.', 1)[-1]}), the largest annotated face, each setting applied to "
                   f"its ground-truth box (no capture or release stage)"
                   + (f"; not drawn: {', '.join(skipped)}" if skipped else "") + ".")
        if items:
            return caption, items
        reasons.append(f"{f}: no setting could be drawn")
    if not inp.result_files:
        return "No detection results: no thumbnail row."
    return ("No thumbnail row: faces are drawn only from the embedded default dataset or your own data "
            f"(dataset=folder or video); these runs used {', '.join(dict.fromkeys(reasons))}.")
