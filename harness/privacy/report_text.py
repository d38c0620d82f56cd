"""The re-identification report as lines of text for a terminal."""

from __future__ import annotations


def _pct(value) -> str:
    return "-" if value is None else f"{100 * value:.0f}%"


def _ci(ci) -> str:
    return "" if not ci or ci[0] is None else f" [{_pct(ci[0])}, {_pct(ci[1])}]"


def attack_label(identity: dict) -> str:
    """The attack as a board and a terminal name it: its models, dlib's version and the render recipe (a new recipe
    gives other figures with the same weights)."""
    return f"{identity['name']} (dlib {identity['dlib']}, renders {identity.get('render', '?')})"


def report_lines(report: dict) -> list[str]:
    o = report["originals"]
    lines = [f"attack: {attack_label(report['attack'])}",
             f"originals: {o['n']} volumes, faces detected {_pct(o['detected'])}, "
             f"positive control rank-1 {_pct(o['control_rank1'])}{_ci(o['control_rank1_ci'])}",
             f"{'defacer':<28} {'n':>4} {'detected':>9} {'rank-1 [95% CI]':>20} {'rank-5 [95% CI]':>20} {'same person':>12} {'chance':>7}"]
    for name, d in report["defacers"].items():
        lines.append(f"{name:<28} {d['n']:>4} {_pct(d['detected']):>9} {_pct(d['rank1']) + _ci(d['rank1_ci']):>20} "
                     f"{_pct(d['rank5']) + _ci(d['rank5_ci']):>20} {_pct(d['same_person']):>12} {_pct(d['chance_rank1']):>7}")
    no_face = {**o["no_face"], **{k: v for d in report["defacers"].values() for k, v in d["no_face"].items()}}
    for label, reason in sorted(no_face.items()):
        lines.append(f"no face: {label}: {reason}")
    return lines
