"""Publish a built leaderboard: to a folder (static site + data) or to a Hugging Face dataset repository.

A dataset repo gets exactly the folder `hf_folder()` makes: data/<board>/results.parquet and pairs.parquet, the
static site under site/, and a README.md dataset card whose YAML `configs:` block names one config per board
(`<board>`, `<board>-pairs`), so `datasets.load_dataset(repo_or_folder, "<board>")` reads it. Both targets are
scanned for non-publishable files, case-id-like strings, local paths and secrets first (LeakError).
"""

from __future__ import annotations

import json
import shutil
import tempfile
from pathlib import Path

from harness.core.errors import HarnessError
from harness.view.marker import VIEW_MARKER, view_markers
from leaderboard.anonymize import check_clean
from leaderboard.built_files import BUILD_FILE, case_ids_of, check_built, files_of, read_build

HF_PREFIX = "hf://"


class PublishError(HarnessError):
    pass


def _read_index(site_dir: Path) -> dict:
    path = site_dir / "leaderboard.json"
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise PublishError(f"{site_dir}: not a built leaderboard (no leaderboard.json); run `harness leaderboard build` first") from None
    except (OSError, ValueError) as exc:
        raise PublishError(f"{path}: unreadable ({exc})") from exc
    if not isinstance(doc, dict) or not str(doc.get("schema", "")).startswith("harness-leaderboard/") \
            or not isinstance(doc.get("boards"), list):
        raise PublishError(f"{path}: not a harness leaderboard index")
    return doc


def refuse_view(site_dir: Path) -> None:
    """A folder written by `harness view --out` (or holding one) shows patient images: never published."""
    markers = view_markers(site_dir)
    if markers:
        raise PublishError(f"{markers[0].parent}: a `harness view` folder (it holds {VIEW_MARKER}): it shows patient "
                           "images and is for the local machine only; refusing to publish it")


def check_publishable(site_dir: Path, salt_dir: Path | None = None) -> None:
    """LeakError listing every finding: files the build did not make as they are (built_files), and the scan for case
    ids (those of the runs it was built from, when this machine built it), local paths and secrets."""
    check_clean(site_dir, case_ids_of(site_dir, salt_dir) or (), also=check_built(site_dir))


def publish(site_dir, to: str, *, staging=None, dry_run: bool = False, salt_dir: Path | None = None) -> Path:
    """Publish `site_dir` to a folder path, or to `hf://[datasets/]owner/name`. For a dataset repo the upload folder
    is written to `staging` (a temporary folder by default) and uploaded unless `dry_run`. Returns the folder
    written (the published copy, or the staged upload folder)."""
    site_dir = Path(site_dir)
    refuse_view(site_dir)
    _read_index(site_dir)
    check_publishable(site_dir, salt_dir)
    if str(to).startswith(HF_PREFIX):
        repo = str(to)[len(HF_PREFIX):].removeprefix("datasets/").strip("/")
        if repo.count("/") != 1 or not all(repo.split("/")):
            raise PublishError(f"{to}: a dataset repo is hf://owner/name or hf://datasets/owner/name")
        folder = hf_folder(site_dir, Path(staging) if staging else Path(tempfile.mkdtemp(prefix="leaderboard-hf-")))
        if not dry_run:
            _upload(folder, repo)
        return folder
    return copy_site(site_dir, Path(to))


def copy_site(site_dir: Path, dest: Path) -> Path:
    if dest.resolve() == site_dir.resolve() or site_dir.resolve() in dest.resolve().parents:
        raise PublishError(f"{dest}: must not be the leaderboard folder or inside it")
    if dest.exists() and any(dest.iterdir()) and not (dest / "leaderboard.json").exists():
        raise PublishError(f"{dest}: folder is not empty and holds no earlier leaderboard; refusing to overwrite it")
    if dest.exists():
        shutil.rmtree(dest)
    listed = set((read_build(site_dir) or {}).get("files", {})) | {BUILD_FILE}
    files, _ = files_of(site_dir)  # links are never copied
    for path in files:
        rel = path.relative_to(site_dir).as_posix()
        if rel in listed:  # only what the build made (check_publishable has refused anything else)
            target = dest / rel
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(path, target, follow_symlinks=False)
    check_clean(dest)
    return dest


def hf_folder(site_dir: Path, dest: Path) -> Path:
    """The exact folder uploaded to a dataset repo (see the module docstring)."""
    index = _read_index(site_dir)
    if dest.exists() and any(dest.iterdir()):
        raise PublishError(f"{dest}: staging folder must be empty")
    copy_site(site_dir, dest / "site")
    configs = []
    for b in index["boards"]:
        name = str(b["name"])
        for kind, src in (("results", f"{name}.parquet"), ("pairs", f"{name}-pairs.parquet")):
            source = site_dir / "results" / src
            if not source.is_file():
                raise PublishError(f"{source}: missing; rebuild the leaderboard")
            target = dest / "data" / name / f"{kind}.parquet"
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(source, target)
            configs.append((name if kind == "results" else f"{name}-pairs", f"data/{name}/{kind}.parquet"))
    (dest / "README.md").write_text(dataset_card(index, configs), encoding="utf-8")
    check_clean(dest)
    return dest


def dataset_card(index: dict, configs: list[tuple[str, str]]) -> str:
    yaml = ["---", "license: cc-by-4.0", "pretty_name: Defacing fidelity leaderboard",
            "tags:", "- medical-imaging", "- de-identification", "- defacing", "- vlm-evaluation", "configs:"]
    for i, (name, path) in enumerate(configs):
        yaml += [f"- config_name: {json.dumps(name)}", "  data_files:", "  - split: train", f"    path: {json.dumps(path)}"]
        if i == 0:
            yaml.append("  default: true")
    yaml.append("---")
    body = ["", "# Defacing fidelity leaderboard", "",
            "What facial de-identification (defacing) of head MRI/CT does to AI answers: each model answered every "
            "case on the original and on the defaced volume. One config per task board holds one row per model x "
            "mode x defacer (scores with bootstrap 95% CIs, paired deltas and Benjamini-Hochberg-adjusted tests, "
            "fidelity, privacy QC and coverage); the `-pairs` configs hold one row per case with the case id "
            "replaced by a salted hash. The browsable site is under `site/` (open `site/index.html`).", "",
            "No images, volumes, prompts, transcripts or case ids are included.", "", "## Boards", ""]
    for b in index["boards"]:
        facts = b.get("facts", {})
        cohort = facts.get("cohort", {})
        body.append(f"- **{b['name']}** ({b.get('title') or b['task']}): {cohort.get('cases_seen', '?')} cases"
                    f"{' of ' + str(cohort.get('name')) if cohort.get('name') else ''}; models "
                    f"{', '.join(facts.get('models', {}))}; defacers {', '.join(facts.get('defacers', {}))}; "
                    f"harness {', '.join(facts.get('harness_versions', []))}")
    body += ["", "Column meanings: `site/results/<board>.json` (`columns`).", ""]
    return "\n".join(yaml + body)


def _upload(folder: Path, repo: str) -> None:
    try:
        from huggingface_hub import HfApi
        from huggingface_hub.errors import HfHubHTTPError
    except ImportError as exc:  # pragma: no cover - a dependency of datasets
        raise PublishError(f"huggingface_hub is needed to publish to a dataset repo ({exc})") from exc
    api = HfApi()
    try:
        api.create_repo(repo, repo_type="dataset", exist_ok=True)
        api.upload_folder(folder_path=str(folder), repo_id=repo, repo_type="dataset",
                          commit_message="Update defacing fidelity leaderboard")
    except HfHubHTTPError as exc:
        raise PublishError(f"hf://datasets/{repo}: upload refused ({exc}); log in with `hf auth login` or set HF_TOKEN. "
                           f"The upload folder is {folder}") from exc
    except OSError as exc:  # no network, DNS, proxy
        raise PublishError(f"hf://datasets/{repo}: cannot reach the Hugging Face Hub ({exc}). The upload folder is "
                           f"{folder}; upload it later or publish with --dry-run") from exc
