"""The leaderboard built from runs made here: tables against hand-computed values, nothing private published,
incomparable runs refused, the dataset folder readable by `datasets`, and the site working in headless Chromium."""

from __future__ import annotations

import csv
import json
import re
import shutil
from pathlib import Path

import pytest

from harness.core.errors import HarnessError
from leaderboard import build, publish
from leaderboard.boards import ComparabilityError
from leaderboard.anonymize import LeakError, scan
from tests.leaderboard_fixtures import OPENAI_KEY, MeasureTask, qc_line, sample, write_run

TASK = MeasureTask()
TASKS = {TASK.name: TASK}
CASES = [f"CASE-SECRET-{i:04d}" for i in range(1, 5)]


def _runs(root: Path, **kw) -> list[Path]:
    """Two runs: m1 (the hand-computed cell of test_aggregate, with case ids that must never be published) and m2."""
    t, (c1, c2, c3, c4) = TASK, CASES
    m1 = [sample(t, c1, "original", "m1", 0.30), sample(t, c2, "original", "m1", 0.32),
          sample(t, c3, "original", "m1", 0.28), sample(t, c4, "original", "m1", status="failed"),
          sample(t, c1, "quickshear", "m1", 0.31), sample(t, c2, "quickshear", "m1", 0.36),
          sample(t, c3, "quickshear", "m1", status="unparsable"), sample(t, c4, "quickshear", "m1", 0.29)]
    qc = [qc_line(t.name, c1, "quickshear", 0.9, 12.0, 0), qc_line(t.name, c2, "quickshear", 0.8, 10.0, 5),
          qc_line(t.name, c3, "quickshear", status="refused"), qc_line(t.name, c4, "quickshear", 0.7, 8.0, 1)]
    m2 = [sample(t, c, cond, "m2", r) for c, r in zip(CASES, (0.25, 0.33, 0.31, 0.40)) for cond in ("original", "quickshear")]
    return [write_run(root / "runs" / "r1", m1, qc, **kw), write_run(root / "runs" / "r2", m2, **kw)]


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    root = tmp_path_factory.mktemp("lb")
    runs = _runs(root)
    result = build(runs, root / "site", tasks=TASKS, salt_dir=root / "salts")
    return root, result


def _csv(path: Path) -> list[dict]:
    with open(path, newline="") as fh:
        return list(csv.DictReader(fh))


def test_tables_hold_hand_computed_values(built):
    root, result = built
    assert result.boards == ["toy-measure"]
    rows = {r["model"]: r for r in _csv(root / "site" / "results" / "toy-measure.csv")}
    m1 = rows["m1"]
    assert (m1["mode"], m1["defacer"], m1["defacer_version"], m1["n_cases"], m1["n_pairs"]) == ("single", "quickshear", "1.1.0", "4", "2")
    assert float(m1["abs_error_original"]) == pytest.approx(0.04 / 3)
    assert float(m1["abs_error_defaced"]) == pytest.approx(0.08 / 3)
    assert float(m1["abs_error_delta"]) == pytest.approx(0.025)
    assert float(m1["abs_error_p"]) == pytest.approx(0.5) and m1["abs_error_test"] == "wilcoxon"
    assert float(m1["correct_original"]) == pytest.approx(2 / 3)
    assert float(m1["fidelity_same_call"]) == pytest.approx(0.5)
    assert float(m1["face_fraction_changed"]) == pytest.approx(0.8)
    assert (m1["brain_voxels_changed_max"], m1["defacer_refusals"]) == ("5", "1")
    assert (m1["original_ok"], m1["original_failed"], m1["defaced_unparsable"]) == ("3", "1", "1")
    # m2 answered identically on both volumes: no change, p = 1, perfect fidelity
    m2 = rows["m2"]
    assert float(m2["abs_error_delta"]) == 0 and float(m2["abs_error_p"]) == 1.0 and float(m2["fidelity_same_call"]) == 1.0
    assert m2["face_fraction_changed"] == "0.8" or float(m2["face_fraction_changed"]) == pytest.approx(0.8)  # per defacer
    # JSON holds the same rows, the declared columns and the full summary
    doc = json.loads((root / "site" / "results" / "toy-measure.json").read_text())
    assert doc["schema"] == "harness-leaderboard/1"
    assert {c["name"] for c in doc["columns"]} >= {"abs_error_delta", "correct_p_adj", "fidelity_ratio_diff"}
    assert doc["summary"]["test_family"].startswith("all accuracy-metric tests")
    md = (root / "site" / "results" / "toy-measure.md").read_text()
    assert "| m1 | single | quickshear | 0.013 [" in md


def test_columns_come_from_declared_metrics(tmp_path):
    class Renamed(MeasureTask):
        accuracy_metrics = (MeasureTask.accuracy_metrics[0].__class__("abs_error", "renamed error", False, unit="ratio"),)
        fidelity_metrics = ()

    runs = _runs(tmp_path)
    build(runs, tmp_path / "site", tasks={TASK.name: Renamed()}, salt_dir=tmp_path / "salts")
    header = (tmp_path / "site" / "results" / "toy-measure.csv").read_text().splitlines()[0].split(",")
    assert "abs_error_delta" in header and not any(h.startswith(("correct", "fidelity_")) for h in header)


def _all_text(folder: Path) -> str:
    return "\n".join(p.read_bytes().decode("latin-1") for p in folder.rglob("*") if p.is_file())


def test_nothing_private_is_published(built, tmp_path):
    root, _ = built
    published = publish(root / "site", str(tmp_path / "public"))
    staged = publish(root / "site", "hf://datasets/someone/defacing-lb", staging=tmp_path / "hf", dry_run=True)
    for folder in (root / "site", published, staged):
        text = _all_text(folder)
        for planted in (*CASES, OPENAI_KEY, "PLANTEDSECRET", "/home/someone", str(root), "PLANTED-LOCAL-DIR/",
                        "/opt/PLANTED-TEMPLATE", "Patient CASE", "measure the Evans ratio"):
            assert planted not in text, f"{planted!r} leaked into {folder}"
        assert not [p for p in folder.rglob("*") if p.suffix in (".nii", ".gz", ".dcm", ".npy", ".jsonl")]
        assert scan(folder, CASES) == []
    pairs = _csv(root / "site" / "results" / "toy-measure-pairs.csv")
    assert len({r["case"] for r in pairs}) == 4 and all(len(r["case"]) == 16 for r in pairs)
    # the command to reproduce is shown, with its key removed and local paths reduced to names
    page = (root / "site" / "toy-measure.html").read_text()
    assert "harness eval --task toy-measure --cohort &lt;local&gt;/cohort.json --api-key" in page


def test_publish_refuses_planted_leaks(built, tmp_path):
    root, _ = built
    site = tmp_path / "site"
    shutil.copytree(root / "site", site)
    (site / "notes.md").write_text(f"see /home/someone/data and {OPENAI_KEY}\n")
    with pytest.raises(LeakError, match="local path"):
        publish(site, str(tmp_path / "out"))
    (site / "notes.md").unlink()
    (site / "face.nii.gz").write_bytes(b"\x1f\x8b")
    with pytest.raises(LeakError, match="not publishable"):
        publish(site, str(tmp_path / "out"))
    findings = scan(root / "site", ["CASE-SECRET-0001"] + ["3ad4"])  # a needle shorter than 6 characters is ignored
    assert findings == []
    (tmp_path / "leak").mkdir()
    (tmp_path / "leak" / "x.csv").write_text("case\nCASE-SECRET-0001\n")
    assert scan(tmp_path / "leak", CASES) and "forbidden" in scan(tmp_path / "leak", CASES)[0]


def test_svg_figures_are_scanned_like_every_other_file(built, tmp_path):
    """The build writes its plots as SVG too; a figure labelled with a case id or a local path must be refused."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    root, _ = built
    site = tmp_path / "site"
    shutil.copytree(root / "site", site)
    assert list((site / "plots").glob("*.svg")) and scan(site, CASES) == []

    def figure(name: str, label: str) -> None:
        fig, ax = plt.subplots()
        ax.scatter([0.1], [0.2])
        ax.annotate(label, (0.1, 0.2))
        fig.savefig(site / "plots" / name)
        plt.close(fig)

    figure("labelled.svg", CASES[0])
    assert [f for f in scan(site, CASES) if "labelled.svg" in f and "forbidden" in f]
    (site / "plots" / "labelled.svg").unlink()
    figure("sourced.svg", "from /data/study/sub-01/t1.nii.gz")
    with pytest.raises(LeakError, match="sourced.svg: contains a local path"):
        publish(site, str(tmp_path / "out"))
    (site / "plots" / "sourced.svg").unlink()
    (site / "plots" / "handmade.svg").write_text('<svg xmlns="http://www.w3.org/2000/svg"><text>/home/someone/x.nii</text></svg>')
    with pytest.raises(LeakError, match="handmade.svg: contains a local path"):
        publish(site, str(tmp_path / "out"))


def test_publish_takes_only_what_the_build_made(built, tmp_path):
    """A face render saved as a plot, a QC sheet as a logo, an image pasted into a page, a PNG named .svg, a volume
    named chart.png, a link to /etc/passwd, a case id typed into README.md: each is refused, naming the file."""
    import gzip
    import io as _io

    from PIL import Image

    root, _ = built
    salts = root / "salts"
    png = _io.BytesIO()
    Image.new("L", (64, 64), 200).save(png, format="PNG")
    plants = {
        "plots/face.png": (png.getvalue(), "plots/face.png: not made by the build"),
        "plots/logo.png": (png.getvalue(), "plots/logo.png: not made by the build"),
        "plots/chart.svg": (png.getvalue(), "plots/chart.svg: is binary, not text"),
        "plots/scan.png": (gzip.compress(b"\x5c\x01" + b"\0" * 400), "plots/scan.png: is not a PNG image"),
    }
    for rel, (data, expected) in plants.items():
        site = tmp_path / rel.replace("/", "-")
        shutil.copytree(root / "site", site)
        (site / rel).write_bytes(data)
        with pytest.raises(LeakError, match=re.escape(expected)):
            publish(site, str(tmp_path / "out"), salt_dir=salts)
        assert not (tmp_path / "out").exists()

    site = tmp_path / "pasted"
    shutil.copytree(root / "site", site)
    page = site / "index.html"
    page.write_text(page.read_text().replace("</body>", '<img src="data:image/png;base64,iVBORw0KGgo="></body>'))
    with pytest.raises(LeakError, match=r"index\.html: changed since the build[\s\S]*index\.html: embeds a file"):
        publish(site, str(tmp_path / "out"), salt_dir=salts)

    site = tmp_path / "linked"
    shutil.copytree(root / "site", site)
    (site / "passwd.txt").symlink_to("/etc/passwd")
    with pytest.raises(LeakError, match=r"passwd\.txt: is a link; links are never published"):
        publish(site, str(tmp_path / "out"), salt_dir=salts)

    site = tmp_path / "typed"
    shutil.copytree(root / "site", site)
    readme = site / "README.md"
    readme.write_text(readme.read_text() + f"\nWorst case: {CASES[2]}\n")
    with pytest.raises(LeakError, match=r"README\.md: changed since the build[\s\S]*README\.md: contains CASE\.\.\. \(a forbidden"):
        publish(site, str(tmp_path / "out"), salt_dir=salts)

    clean = publish(root / "site", str(tmp_path / "clean"), salt_dir=salts)  # the untouched build publishes
    assert sorted(p.relative_to(clean).as_posix() for p in clean.rglob("*") if p.is_file()) == \
        sorted(p.relative_to(root / "site").as_posix() for p in (root / "site").rglob("*") if p.is_file())


def test_incomparable_runs_are_refused_or_separated(tmp_path):
    runs = _runs(tmp_path / "a") + [write_run(tmp_path / "b" / "r3", [sample(TASK, "CASE-SECRET-0009", "original", "m3", 0.3)],
                                              task_version="2")]
    with pytest.raises(ComparabilityError, match="not comparable: they differ in task") as err:
        build(runs, tmp_path / "site", tasks=TASKS, salt_dir=tmp_path / "salts")
    assert "r3" in str(err.value) and "--separate" in str(err.value)
    result = build(runs, tmp_path / "site", tasks=TASKS, salt_dir=tmp_path / "salts", separate=True)
    assert len(result.boards) == 2 and all(b.startswith("toy-measure--") for b in result.boards)
    other = write_run(tmp_path / "c" / "r4", [sample(TASK, "CASE-SECRET-0001", "original", "m4", 0.3)],
                      cohort_hash="another-cohort")
    with pytest.raises(ComparabilityError, match="cohort"):
        build(runs[:2] + [other], tmp_path / "site", tasks=TASKS, salt_dir=tmp_path / "salts")
    with pytest.raises(HarnessError, match="not empty"):
        (tmp_path / "precious").mkdir()
        (tmp_path / "precious" / "thesis.txt").write_text("x")
        build(runs[:2], tmp_path / "precious", tasks=TASKS, salt_dir=tmp_path / "salts")


def test_runs_of_one_task_in_different_modes_share_a_board(tmp_path):
    """A run per mode (e.g. nph-evans agent, direct and labels): one board, a row per mode."""
    runs = _runs(tmp_path / "a")
    direct = write_run(tmp_path / "b" / "r5", [sample(TASK, c, cond, "algorithm:toy", 0.3, mode="direct")
                                               for c in CASES for cond in ("original", "quickshear")], mode="direct")
    result = build(runs + [direct], tmp_path / "site", tasks=TASKS, salt_dir=tmp_path / "salts")
    assert result.boards == ["toy-measure"]
    rows = _csv(tmp_path / "site" / "results" / "toy-measure.csv")
    assert sorted((r["model"], r["mode"]) for r in rows) == [("algorithm:toy", "direct"), ("m1", "single"), ("m2", "single")]


def test_dataset_folder_loads_with_datasets(built, tmp_path):
    datasets = pytest.importorskip("datasets")
    root, _ = built
    folder = publish(root / "site", "hf://someone/defacing-lb", staging=tmp_path / "hf", dry_run=True)
    assert (folder / "README.md").read_text().startswith("---\nlicense:")
    results = datasets.load_dataset(str(folder), cache_dir=str(tmp_path / "cache"), split="train")
    assert sorted(results["model"]) == ["m1", "m2"]
    m1 = results.filter(lambda r: r["model"] == "m1")[0]
    assert m1["abs_error_delta"] == pytest.approx(0.025) and m1["defaced_unparsable"] == 1
    pairs = datasets.load_dataset(str(folder), "toy-measure-pairs", cache_dir=str(tmp_path / "cache"), split="train")
    assert len(pairs) == 8 and set(pairs["defacer"]) == {"quickshear"}


def test_hf_target_must_name_a_repo(built, tmp_path):
    root, _ = built
    with pytest.raises(HarnessError, match="owner/name"):
        publish(root / "site", "hf://just-a-name", staging=tmp_path / "hf", dry_run=True)


def test_cli_builds_and_publishes(tmp_path, monkeypatch):
    from typer.testing import CliRunner

    from harness.cli import _register, app
    from tasks import task_registry
    from tests.leaderboard_fixtures import MeasureTask

    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))  # the cohort salt lives in the harness cache
    with task_registry.override(TASK.name, MeasureTask):
        if not any(g.name == "leaderboard" for g in app.registered_groups):
            _register()
        runs = _runs(tmp_path)
        runner = CliRunner()
        res = runner.invoke(app, ["leaderboard", "build", *map(str, runs), "--out", str(tmp_path / "site")])
        assert res.exit_code == 0, res.output
        assert "1 board(s) (toy-measure)" in res.output and (tmp_path / "site" / "index.html").is_file()
        folder = runner.invoke(app, ["leaderboard", "build", str(tmp_path / "runs"), "--out", str(tmp_path / "site2")])
        assert folder.exit_code == 0 and "1 board(s) (toy-measure)" in folder.output, folder.output  # the --out folder
        assert (tmp_path / "site2" / "results" / "toy-measure.csv").read_bytes() == (tmp_path / "site" / "results" / "toy-measure.csv").read_bytes()
        neither = runner.invoke(app, ["leaderboard", "build", str(tmp_path / "cache"), "--out", str(tmp_path / "site3")])
        assert neither.exit_code != 0 and "nor a folder of run directories" in str(neither.exception or neither.output)
        assert list((tmp_path / "cache" / "harness" / "leaderboard-salts").glob("*.salt"))
        res = runner.invoke(app, ["leaderboard", "publish", str(tmp_path / "site"), "--to", str(tmp_path / "pub")])
        assert res.exit_code == 0, res.output
        assert (tmp_path / "pub" / "toy-measure.html").is_file()


# ---- the publish scan and its tools, one behaviour at a time ----------------------------------------------------

@pytest.mark.parametrize("text, shown", [
    ("/home/alice/data/cohort.json", "<local>/cohort.json"),
    ("C:\\Users\\bob\\runs\\x.csv", "<local>/x.csv"),
    ("~/x", "<local>/x"),
    ("~/studies/sub-01/t1.nii.gz", "<local>/t1.nii.gz"),
    ("/home/bob", "<local>/bob"),
    ("/opt/a/b", "<local>/b"),
    ("/data/run/INDEX", "<local>/INDEX"),
    ("see /tmp/run 1/samples.jsonl, then", "see <local>/samples.jsonl, then"),
    ("--cohort /data/c.json --out=/scratch/u/lb", "--cohort <local>/c.json --out=<local>/lb"),
])
def test_local_paths_are_shown_as_their_name_only(text, shown):
    from leaderboard.anonymize import scrub_paths

    assert scrub_paths(text) == shown


@pytest.mark.parametrize("text", ["speed in mm/s", "ratio 1/2", "/s", "a.b/c/d", "https://example.org/a/b/c.json",
                                  "n/a", "<local>/cohort.json", "km/h and m/s/s"])
def test_units_fractions_urls_and_scrubbed_names_are_left_alone(text):
    from leaderboard.anonymize import scrub_paths

    assert scrub_paths(text) == text


def test_clean_redacts_secrets_and_scrubs_paths_at_any_depth():
    from leaderboard.anonymize import clean

    facts = {"command": f"harness eval --api-key {OPENAI_KEY} --cohort /data/c.json",
             "nested": [{"path": "/home/u/x.nii"}, ("/tmp/a/b", 3)], 7: 1.5, "flag": True, "none": None}
    out = clean(facts)
    assert out == {"command": "harness eval --api-key <redacted> --cohort <local>/c.json",
                   "nested": [{"path": "<local>/x.nii"}, ["<local>/b", 3]], "7": 1.5, "flag": True, "none": None}


def test_the_cohort_salt_is_secret_stable_and_per_cohort(tmp_path, monkeypatch):
    from leaderboard.anonymize import cohort_salt, hash_case

    salts = tmp_path / "salts"
    first = cohort_salt("cohort-a", salts)
    assert len(first) == 16 and cohort_salt("cohort-a", salts) == first  # made once, then reused
    assert cohort_salt("cohort-b", salts) != first
    (file_a,) = [p for p in salts.iterdir() if p.read_text().strip() == first.hex()]
    assert file_a.suffix == ".salt" and "cohort-a" not in file_a.name and file_a.stat().st_mode & 0o077 == 0
    # the salt file's name is pinned: a new name would mean a new salt, and every published case hash would change
    assert file_a.name == "d5b4d47758f12a7ccf0c155dd22d062e.salt"
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    default = cohort_salt("cohort-a")  # without a folder: the harness cache, never the leaderboard
    assert [p.parent for p in (tmp_path / "cache").rglob("*.salt")] == [tmp_path / "cache" / "harness" / "leaderboard-salts"]
    assert default != first
    file_a.write_text("not hex\n")
    with pytest.raises(HarnessError, match="cannot read the cohort salt .*delete it to make a new one") as info:
        cohort_salt("cohort-a", salts)
    assert str(info.value).startswith(f"{file_a}: ")
    # hashed case ids: 16 hex characters, the same for the same salt, unrelated to a plain hash of the id
    import hashlib

    h = hash_case("CASE-SECRET-0001", first)
    assert len(h) == 16 and int(h, 16) >= 0 and h == hash_case("CASE-SECRET-0001", first)
    assert h != hash_case("CASE-SECRET-0001", cohort_salt("cohort-b", salts)) != hash_case("CASE-SECRET-0002", first)
    assert h not in hashlib.sha256(b"CASE-SECRET-0001").hexdigest()
    assert hash_case("CASE-1", bytes(16)) == "6d0955454b2e385a"  # published pairs keep their ids across versions


def _folder(tmp_path, files: dict) -> Path:
    folder = tmp_path / "site"
    for name, content in files.items():
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        if isinstance(content, bytes):
            (folder / name).write_bytes(content)
        else:
            (folder / name).write_text(content, encoding="utf-8")
    return folder


def test_scan_names_each_file_and_what_it_holds(tmp_path):
    folder = _folder(tmp_path, {
        "a.csv": "case\nCASE-SECRET-0001\n",
        "b/notes.md": f"key {OPENAI_KEY}\n",
        "c.json": '{"from": "/Users/ann/x"}',
        "d.npy": b"\x93NUMPY",
        "README": "no suffix",
        "e.TXT": "clean text, 5 mm/s, see https://example.org/home/x and <local>/cohort.json\n",
        "f.html": "<td>~/runs</td>",
    })
    assert scan(folder, CASES) == [
        "README: file type (none) is not publishable",
        "a.csv: contains CASE... (a forbidden string)",
        "b/notes.md: contains a secret-looking value (sk-pro...)",
        "c.json: contains a local path (/Users/...)",
        "d.npy: file type .npy is not publishable",
        "f.html: contains a local path (~/...)",
    ]


def test_scan_finds_every_local_path_prefix_once_per_file(tmp_path):
    from leaderboard.anonymize import _LOCAL_PREFIXES

    for prefix in _LOCAL_PREFIXES:
        folder = _folder(tmp_path / prefix.strip("/\\~:").replace("\\", "") / "x", {
            "p.md": f"from {prefix}data and {prefix}other\n"})
        assert scan(folder) == [f"p.md: contains a local path ({prefix}...)"], prefix


def test_short_case_ids_are_not_searched_and_the_longest_needle_is_named(tmp_path):
    folder = _folder(tmp_path, {"a.csv": "id\nABCDE\nLONGCASE-000123\n123456\n"})
    assert scan(folder, ["ABCDE", "", None]) == []  # 5 characters would match everywhere
    assert scan(folder, ["ABCDEF"]) == []
    assert scan(folder, ["CASE-000123", "LONGCASE-000123"]) == ["a.csv: contains LONG... (a forbidden string)",
                                                                "a.csv: contains CASE... (a forbidden string)"]
    assert scan(folder, ["ONGCASE-000123", "LONGCASE-000123"]) == ["a.csv: contains LONG... (a forbidden string)",
                                                                   "a.csv: contains ONGC... (a forbidden string)"]
    assert scan(folder, [123456]) == ["a.csv: contains 1234... (a forbidden string)"]  # ids given as numbers


def test_png_text_chunks_are_searched_but_pixels_never_make_a_path(tmp_path):
    png = b"\x89PNG\r\n\x1a\n" + b"tEXtComment\x00CASE-SECRET-0001 " + OPENAI_KEY.encode() + b" ~/x /home/u\xff\xfe"
    folder = _folder(tmp_path, {"plot.PNG": png})
    assert scan(folder, CASES) == ["plot.PNG: contains CASE... (a forbidden string)",
                                   "plot.PNG: contains a secret-looking value (sk-pro...)"]


def test_parquet_cells_and_metadata_are_scanned_decoded(tmp_path):
    pa = pytest.importorskip("pyarrow")
    import pyarrow.parquet as pq

    folder = tmp_path / "site"
    folder.mkdir()
    table = pa.table({"case": CASES, "value": [1.0, 2.0, 3.0, 4.0]})
    pq.write_table(table, folder / "pairs.parquet", compression="zstd", write_statistics=False)
    assert not [c for c in CASES[1:] if c.encode() in (folder / "pairs.parquet").read_bytes()]  # compressed away
    meta = pa.table({"x": [1]}).replace_schema_metadata({"source": "/data/study/cohort.json"})
    pq.write_table(meta, folder / "meta.parquet", compression="zstd")
    assert scan(folder, CASES[1:]) == ["meta.parquet: contains a local path (/data/...)"] + [
        "pairs.parquet: contains CASE... (a forbidden string)"] * 3


def test_check_clean_refuses_with_the_count_and_the_first_twenty_findings(tmp_path):
    from leaderboard.anonymize import check_clean

    folder = _folder(tmp_path, {f"f{i:02d}.md": f"{CASES[0]}\n" for i in range(25)})
    with pytest.raises(LeakError) as info:
        check_clean(folder, CASES)
    lines = str(info.value).splitlines()
    assert lines[0] == f"{folder}: refusing to publish, 25 finding(s):"
    assert lines[1:] == [f"  f{i:02d}.md: contains CASE... (a forbidden string)" for i in range(20)]
    check_clean(_folder(tmp_path / "ok", {"a.md": "fine\n"}), CASES)  # a clean folder passes


def test_non_ascii_case_ids_are_found_in_text_png_and_parquet_alike(tmp_path):
    """PNG text chunks are Latin-1, text files UTF-8 (a stray byte must not stop the scan), Parquet decoded."""
    pa = pytest.importorskip("pyarrow")
    import datetime

    import pyarrow.parquet as pq

    case = "PATIENT-Jürgen-01"
    folder = _folder(tmp_path, {
        "a.md": f"{case}\n",
        "b.csv": b"name\n\xff\xfe broken byte\n" + case.encode() + b"\n",
        "c.png": b"\x89PNG\r\n\x1a\ntEXtTitle\x00" + case.encode("latin-1") + b"\x00\xc3",
        "clean.md": "Jürgen is not a case id here\n",
    })
    table = pa.table({"case": [case], "when": [datetime.datetime(2024, 1, 2, 3, 4, 5)]})
    pq.write_table(table.replace_schema_metadata({b"\xffblob": b"\xff\xfe /home/u/x"}), folder / "d.parquet",
                   compression="zstd")
    assert scan(folder, [case]) == [f"{name}: contains PATI... (a forbidden string)"
                                    for name in ("a.md", "b.csv", "c.png", "d.parquet")] + [
        "d.parquet: contains a local path (/home/...)"]
