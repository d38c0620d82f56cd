"""The pages of a view, by path: one router that the local server and the static copy (`--out`) both use, so the two
show the same pages. Every link is relative, so a static copy opens from disk as the server shows it.

    index.html                       the runs
    runs/RID/index.html              a run's overview: grid, coverage, failures by reason, manifest facts
    runs/RID/samples.html            the samples, filterable and sortable (in the page: no request is made)
    runs/RID/pairs.html              the pairs (original vs defaced), with fidelity values and score deltas
    runs/RID/sample/SID.html         one sample: images, transcript, answers, scores, tokens, timings, failure
    runs/RID/pair/PID.html           one pair side by side
    runs/RID/image/SID-N.png         the sample's image number N, re-rendered from its volume
"""

from __future__ import annotations

import hashlib
import re
from pathlib import Path

from jinja2 import Environment, FileSystemLoader, select_autoescape

from harness.core.sample import Sample
from harness.imaging.compact import abbreviated
from harness.view.catalog import Pair, Selection, ViewRun
from harness.view.images import ImageSource, shown_images
from harness.view.transcript import budgets, entries, raw_answer

TEMPLATES = Path(__file__).parent / "templates"
HTML = "text/html; charset=utf-8"
_SAFE = re.compile(r"[A-Za-z0-9._-]{1,80}")


def slug(identifier: str) -> str:
    """A file-name-safe token for a sample or pair id (ids are hashes, but may be any text in other runs)."""
    return identifier if _SAFE.fullmatch(identifier) and not identifier.startswith(".") else \
        "h" + hashlib.sha256(identifier.encode()).hexdigest()[:20]


class View:
    def __init__(self, runs: list[ViewRun], images: ImageSource, selection: Selection = Selection()):
        self.runs = {r.rid: r for r in runs}
        self.images = images
        self.selection = selection
        self._samples: dict[str, dict[str, Sample]] = {}  # rid -> slug -> selected samples and their pair partners
        self._pairs: dict[str, dict[str, Pair]] = {}
        for run in runs:
            pairs = selection.pairs(run)
            self._pairs[run.rid] = {slug(p.pair_id): p for p in pairs}
            chosen = selection.samples(run) + [s for p in pairs for s in (p.original, p.defaced) if s is not None]
            self._samples[run.rid] = {slug(s.sample_id): s for s in chosen}
        self.env = Environment(loader=FileSystemLoader(str(TEMPLATES)), autoescape=select_autoescape(["html"]),
                               trim_blocks=True, lstrip_blocks=True)
        self.env.filters["num"] = _num
        self.env.filters["abbreviated"] = abbreviated  # encoded masks and label maps: their size, not their bytes
        self.env.globals.update(slug=slug, sample_link=self.sample_link, pair_link=self.pair_link)

    # ---- what is in the view ----------------------------------------------------------------------------------

    def sample_link(self, run: ViewRun, sample: Sample | None) -> str | None:
        """The sample page's path from the run folder, None when the sample is not in this view."""
        if sample is None or slug(sample.sample_id) not in self._samples[run.rid]:
            return None
        return f"sample/{slug(sample.sample_id)}.html"

    def pair_link(self, run: ViewRun, pair_id: str) -> str | None:
        return f"pair/{slug(pair_id)}.html" if slug(pair_id) in self._pairs[run.rid] else None

    def paths(self) -> list[str]:
        """Every page and image of the view (what `--out` writes)."""
        out = ["index.html"]
        for rid, run in self.runs.items():
            out += [f"runs/{rid}/index.html", f"runs/{rid}/samples.html", f"runs/{rid}/pairs.html"]
            out += [f"runs/{rid}/pair/{s}.html" for s in self._pairs[rid]]
            for s, sample in self._samples[rid].items():
                out.append(f"runs/{rid}/sample/{s}.html")
                out += [f"runs/{rid}/image/{s}-{i.number}.png" for i in shown_images(sample)]
        return out

    # ---- the router -------------------------------------------------------------------------------------------

    def get(self, path: str) -> tuple[str, bytes] | None:
        """(content type, body) of a path of the view, None when there is no such page."""
        parts = path.strip("/").split("/") if path.strip("/") else ["index.html"]
        if parts == ["index.html"]:
            return HTML, self._page("index.html", "", runs=list(self.runs.values()))
        if len(parts) < 3 or parts[0] != "runs" or parts[1] not in self.runs:
            return None
        run, rest = self.runs[parts[1]], parts[2:]
        root = "../../" if len(rest) == 1 else "../../../"
        if rest == ["index.html"]:
            return HTML, self._page("overview.html", root, run=run)
        if rest == ["samples.html"]:
            return HTML, self._samples_list(run, root)
        if rest == ["pairs.html"]:
            return HTML, self._pairs_list(run, root)
        if len(rest) != 2:
            return None
        kind, name = rest
        if kind == "sample" and name.endswith(".html") and (sample := self._samples[run.rid].get(name[:-5])):
            return HTML, self._sample_page(run, sample, root)
        if kind == "pair" and name.endswith(".html") and (pair := self._pairs[run.rid].get(name[:-5])):
            return HTML, self._pair_page(run, pair, root)
        if kind == "image" and (m := re.fullmatch(r"(.+)-(\d+)\.png", name)) and (sample := self._samples[run.rid].get(m.group(1))):
            shown = shown_images(sample)
            number = int(m.group(2))
            if number < len(shown):
                check = self.images.check(run.manifest, sample, shown[number])
                return ("image/png", check.png) if check.png else None
        return None

    # ---- pages ------------------------------------------------------------------------------------------------

    def _page(self, template: str, root: str, **context) -> bytes:
        return self.env.get_template(template).render(root=root, selection=self.selection, **context).encode("utf-8")

    def _samples_list(self, run: ViewRun, root: str) -> bytes:
        metrics = run.metrics("accuracy")
        changed = run.changed_samples()
        samples = sorted(self._samples[run.rid].values(), key=lambda s: (s.task, s.case_id, s.model, s.mode, s.condition))
        rows = [{"sample": s, "link": self.sample_link(run, s), "changed": s.sample_id in changed,
                 "scores": [s.scores.get(m) for m in metrics]} for s in samples]
        return self._page("samples.html", root, run=run, rows=rows, metrics=metrics,
                          choices=_choices(samples, ("task", "condition", "model", "mode", "status")))

    def _pairs_list(self, run: ViewRun, root: str) -> bytes:
        pairs = sorted(self._pairs[run.rid].values(), key=lambda p: (p.defaced.task, p.defaced.case_id, p.defaced.model,
                                                                   p.defaced.mode, p.defaced.condition))
        fidelity = run.metrics("fidelity")
        deltas = sorted({m for p in pairs for m in p.score_deltas()})
        rows = [{"pair": p, "link": self.pair_link(run, p.pair_id), "fidelity": [p.fidelity.get(m) for m in fidelity],
                 "deltas": [p.score_deltas().get(m) for m in deltas]} for p in pairs]
        return self._page("pairs.html", root, run=run, rows=rows, fidelity=fidelity, deltas=deltas,
                          choices=_choices([p.defaced for p in pairs], ("task", "condition", "model", "mode", "status")))

    def _side(self, run: ViewRun, sample: Sample) -> dict:
        """What a sample page and each side of a pair page show of one sample."""
        images = [(i, self.images.check(run.manifest, sample, i)) for i in shown_images(sample)]
        return {"sample": sample, "link": self.sample_link(run, sample), "images": images, "raw_answer": raw_answer(sample),
                "image_src": lambda number: f"../image/{slug(sample.sample_id)}-{number}.png",
                "mismatches": sum(c.status == "mismatch" for _, c in images),
                "unavailable": sum(c.status == "unavailable" for _, c in images)}

    def _sample_page(self, run: ViewRun, sample: Sample, root: str) -> bytes:
        pairs = [(run.pairs[pid].defaced.condition, self.pair_link(run, pid)) for pid in run.pair_of.get(sample.sample_id, [])]
        return self._page("sample.html", root, run=run, side=self._side(run, sample), entries=entries(sample),
                          budgets=budgets(sample, run.manifest), pairs=pairs)

    def _pair_page(self, run: ViewRun, pair: Pair, root: str) -> bytes:
        sides = [self._side(run, s) if s is not None else None for s in (pair.original, pair.defaced)]
        metrics = sorted({m for s in (pair.original, pair.defaced) if s is not None for m in s.scores})
        viewed = [[i.label for i in shown_images(s)] if s else [] for s in (pair.original, pair.defaced)]
        # for agents, what one side looked at and the other did not is often why the answers differ
        only = [set(viewed[0]) - set(viewed[1]), set(viewed[1]) - set(viewed[0])]
        rows = [[side["images"][k] if side and k < len(side["images"]) else None for side in sides]
                for k in range(max((len(side["images"]) for side in sides if side), default=0))]
        return self._page("pair.html", root, run=run, pair=pair, sides=sides, metrics=metrics,
                          deltas=pair.score_deltas(), viewed=viewed, only=only, rows=rows)


def _choices(samples, fields) -> dict[str, list[str]]:
    return {f: sorted({str(getattr(s, f)) for s in samples}) for f in fields}


def _num(value) -> str:
    if isinstance(value, bool) or value is None:
        return "-" if value is None else str(value).lower()
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)
