"""Label tables: what the numbers of a label map mean, and how they merge into the regions segmentation-fidelity
studies report (Gao et al. 2022, merging SLANT's 132 labels: whole brain + ventricles, caudate, cerebral white
matter, cerebral grey matter, brainstem, putamen, thalamus, cerebellar grey matter, cerebellar white matter).

Built in: `freesurfer` (aseg.mgz and aparc+aseg.mgz labels of FreeSurferColorLUT.txt; also what SynthSeg and
FastSurfer write) and `slant` (SLANT's BrainCOLOR table). Any other table is a TSV given by path, in the same format
as the built-in files (freesurfer.tsv, slant.tsv beside this module):

    label <TAB> name <TAB> region <TAB> brain <TAB> lateral_ventricle      (a header line; '#' lines are comments)

`label` a positive integer (a BIDS dseg.tsv's `index` column is read as label), `name` text; `region` one of REGIONS[1:] or empty; `brain` yes/no (default yes: counted
in whole_brain); `lateral_ventricle` yes/no (default no: the labels whose frontal horns the Evans ratio measures).
Only `label` and `name` are required columns.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass
from functools import lru_cache
from importlib import resources
from pathlib import Path

from harness.core.errors import HarnessError

WHOLE_BRAIN = "whole_brain"
REGIONS = (WHOLE_BRAIN, "ventricles", "caudate", "cerebral_wm", "cerebral_gm", "brainstem", "putamen", "thalamus",
           "cerebellar_gm", "cerebellar_wm")
BUILT_IN = ("freesurfer", "slant")
YES, NO = ("yes", "y", "1", "true"), ("no", "n", "0", "false")


class LabelTableError(HarnessError):
    pass


@dataclass(frozen=True)
class LabelTable:
    name: str  # "freesurfer", "slant", or the TSV's path
    names: dict[int, str]  # label -> name
    regions: dict[str, tuple[int, ...]]  # every name of REGIONS -> its labels (possibly none)
    lateral_ventricles: tuple[int, ...]

    def name_of(self, label: int) -> str:
        return self.names.get(int(label), f"label {int(label)}")


def label_table(spec: str) -> LabelTable:
    """The table `spec` names: a built-in name or a TSV path. LabelTableError names the file and the line at fault."""
    spec = str(spec).strip()
    if spec in BUILT_IN:
        return _built_in(spec)
    path = Path(spec)
    if not path.is_file():
        raise LabelTableError(f"label table {spec!r}: neither {' nor '.join(BUILT_IN)} nor a TSV file")
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise LabelTableError(f"{path}: cannot read the label table ({exc.__class__.__name__})") from None
    return _parse(text, str(path))


@lru_cache(maxsize=None)
def _built_in(name: str) -> LabelTable:
    return _parse(resources.files(__name__).joinpath(f"{name}.tsv").read_text(encoding="utf-8"), name)


def _flag(value: str | None, default: bool, where: str, column: str) -> bool:
    text = (value or "").strip().lower()
    if not text:
        return default
    if text in YES or text in NO:
        return text in YES
    raise LabelTableError(f"{where}: {column} must be yes or no, not {value!r}")


def _parse(text: str, source: str) -> LabelTable:
    lines = [(n, line) for n, line in enumerate(text.splitlines(), 1) if line.strip() and not line.lstrip().startswith("#")]
    if not lines:
        raise LabelTableError(f"{source}: the label table is empty")
    reader = csv.DictReader([line for _, line in lines], delimiter="\t")
    if reader.fieldnames and "label" not in reader.fieldnames and "index" in reader.fieldnames:
        reader.fieldnames = ["label" if f == "index" else f for f in reader.fieldnames]  # BIDS dseg.tsv
    missing = {"label", "name"} - set(reader.fieldnames or ())
    if missing:
        raise LabelTableError(f"{source}: the header must name the columns label and name (tab-separated); "
                              f"missing {', '.join(sorted(missing))}")
    names: dict[int, str] = {}
    members: dict[str, list[int]] = {r: [] for r in REGIONS}
    lateral: list[int] = []
    for (n, _), row in zip(lines[1:], reader):
        where = f"{source} line {n}"
        try:
            label = int(str(row.get("label", "")).strip())
        except ValueError:
            raise LabelTableError(f"{where}: label must be an integer, not {row.get('label')!r}") from None
        if label <= 0:
            raise LabelTableError(f"{where}: label must be positive (0 is background), not {label}")
        if label in names:
            raise LabelTableError(f"{where}: label {label} is listed twice")
        names[label] = str(row.get("name") or "").strip() or f"label {label}"
        region = str(row.get("region") or "").strip()
        if region and region not in REGIONS[1:]:
            raise LabelTableError(f"{where}: region {region!r} is not one of {', '.join(REGIONS[1:])}")
        if region:
            members[region].append(label)
        if _flag(row.get("brain"), True, where, "brain"):
            members[WHOLE_BRAIN].append(label)
        if _flag(row.get("lateral_ventricle"), False, where, "lateral_ventricle"):
            lateral.append(label)
    return LabelTable(source, names, {r: tuple(v) for r, v in members.items()}, tuple(lateral))
