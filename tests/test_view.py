"""`harness view` on two real runs (tests/view_fixtures.py): the overview, lists, sample and pair pages over HTTP on
127.0.0.1 and in headless Chromium (Debian's chromium; CI installs it), images re-rendered and checked against the
stored sha256 (a mismatch is shown), the static copy and its marker, and publish refusing a view folder."""

from __future__ import annotations

import hashlib
import json
import re
import shutil
import subprocess
import sys
import urllib.request
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from harness.cli import _register, app
from harness.core.errors import HarnessError
from harness.imaging.render import RenderError, RenderSpec, Slices
from harness.store.run_store import read_samples
from harness.view.catalog import Selection, load_runs
from harness.view.images import ImageSource, shown_images
from harness.view.marker import VIEW_MARKER
from harness.view.pages import View, slug
from harness.view.server import serve_in_thread
from harness.view.transcript import budgets, raw_answer
from leaderboard.publish import PublishError, publish
from tests.chromium_cdp import CHROMIUM, Chromium
from tests.view_fixtures import DEFACER, make_runs, blank_defacer

ROOT = Path(__file__).resolve().parents[1]
needs_chromium = pytest.mark.skipif(not Path(CHROMIUM).exists(),
                                    reason=f"{CHROMIUM} not found (CI installs Debian's chromium package)")


@pytest.fixture(scope="module")
def made(tmp_path_factory):
    root = tmp_path_factory.mktemp("view")
    with blank_defacer():
        runs, cache = make_runs(root)
        yield root, runs, cache


@pytest.fixture(scope="module")
def served(made):
    root, runs, cache = made
    view = View(load_runs(runs), ImageSource(cache))
    server, thread = serve_in_thread(view)
    yield view, f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


@pytest.fixture(scope="module")
def browser(tmp_path_factory):
    with Chromium(tmp_path_factory.mktemp("profile")) as chromium:
        yield chromium


def get(url: str) -> str:
    with urllib.request.urlopen(url, timeout=30) as reply:
        return reply.read().decode()


def rids(view):
    single, agent = view.runs  # in the order given: the single-mode run, then the agent run
    return single, agent


def test_overview_shows_grid_coverage_failures_and_manifest(served):
    view, base = served
    single, agent = rids(view)
    page = get(f"{base}/runs/{single}/index.html")
    assert "Contains patient images" in page
    grid = re.findall(r"<tr><td>nph-evans</td><td>scripted:nph-evans</td><td>single</td><td>([^<]+)</td>"
                      r"<td class=\"n\">(\d+)</td>\s*<td class=\"n ok\">(\d+)</td><td class=\"n unparsable\">(\d+)</td>"
                      r"<td class=\"n failed\">(\d+)</td>\s*<td class=\"n\">(\d+)%</td>", page)
    # three planned cases (two answered, one timed out in the original condition), two of them defaced: the
    # defacer blanks so much that one defaced answer cannot be read
    assert sorted(grid) == [("original", "3", "2", "0", "1", "67"), (DEFACER, "3", "1", "1", "0", "33")]
    assert re.search(r'<td class="failed">timeout</td><td class="n">1</td>', page)
    assert f"name={DEFACER}, version=1" in page and "revision=code-" in page
    agent_page = get(f"{base}/runs/{agent}/index.html")
    assert re.search(r'<td class="failed">budget_exceeded</td><td class="n">4</td>', agent_page)


def test_sample_page_images_match_their_stored_hashes_and_transcript_is_complete(served):
    view, base = served
    _, agent = rids(view)
    run = view.runs[agent]
    sample = next(s for s in run.samples.values() if s.condition == DEFACER)
    page = get(f"{base}/runs/{agent}/sample/{slug(sample.sample_id)}.html")
    assert page.count('data-status="match"') == 1 and 'data-status="mismatch"' not in page
    assert "&rarr; view_montage({&#34;plane&#34;: &#34;axial&#34;})" in page  # the tool call, with its arguments
    assert "tool result: submit" in page and "forced submit" in page and "budget_exceeded" in page
    png = urllib.request.urlopen(f"{base}/runs/{agent}/image/{slug(sample.sample_id)}-0.png", timeout=30).read()
    [shown] = shown_images(sample)
    assert hashlib.sha256(png).hexdigest() == shown.sha256  # exactly the bytes the model saw


def test_a_changed_image_is_shown_as_mismatch(made, tmp_path):
    _, runs, cache = made
    copy = shutil.copytree(runs[1], tmp_path / "run")
    lines = (copy / "samples.jsonl").read_text().splitlines()
    record = json.loads(lines[0])
    image = next(e for e in record["transcript"] if e.get("images"))["images"][0]
    image["image_sha256"] = "0" * 64  # what the model saw is no longer what the volume gives
    (copy / "samples.jsonl").write_text("\n".join([json.dumps(record)] + lines[1:]) + "\n")
    with blank_defacer():
        view = View(load_runs([copy]), ImageSource(cache))
        run = next(iter(view.runs.values()))
        page = view.get(f"runs/{run.rid}/sample/{slug(record['sample_id'])}.html")[1].decode()
    assert page.count('data-status="mismatch"') == 1 and "MISMATCH: not what the model saw" in page
    assert "sha256 0000000000000000" in page


def test_an_image_that_cannot_be_made_again_says_why(made, tmp_path):
    _, runs, _ = made
    with blank_defacer():  # an empty cache: the defaced volume is not there, and is not computed
        view = View(load_runs([runs[0]]), ImageSource(tmp_path / "empty-cache"))
        run = next(iter(view.runs.values()))
        defaced = next(s for s in run.samples.values() if s.condition == DEFACER)
        page = view.get(f"runs/{run.rid}/sample/{slug(defaced.sample_id)}.html")[1].decode()
    assert 'data-status="unavailable"' in page and "is not in the defacer cache" in page
    assert not (tmp_path / "empty-cache" / "defaced").exists()


def test_transcript_reading(made):
    _, runs, _ = made
    agent = read_samples(runs[1])[0]
    assert raw_answer(agent) == 'submit({"answer": "unknown"})'  # refused every time: the last call is shown
    used = {name: (value, limit) for name, value, limit in budgets(agent, {"config": {"budget": {"max_steps": 16}}})}
    assert used["steps"] == ("17", "16") and used["images"] == ("1", "-")
    single = next(s for s in read_samples(runs[0]) if s.status == "ok")
    assert json.loads(raw_answer(single))["evans_ratio"] == single.answer["evans_ratio"]


def test_render_spec_round_trips_and_rejects_bad_records():
    for spec in (RenderSpec(), RenderSpec(plane="coronal", slices=Slices("index", (3, 9)), window=(40, 80), size=64,
                                          montage=(0, 0), labels=True), RenderSpec(slices=Slices("mm", (-12.5,)))):
        assert RenderSpec.from_dict(json.loads(json.dumps(spec.to_dict()))) == spec
    for bad in (None, {}, {"plane": "axial", "slices": {"kind": "evil"}, "size": 64},
                {"plane": "axial", "slices": {"kind": "index", "values": ["x"]}, "size": 64}):
        with pytest.raises(RenderError):
            RenderSpec.from_dict(bad)


def test_static_copy_of_a_selection_has_the_marker_and_publish_refuses_it(made, tmp_path):
    root, runs, cache = made
    _register()
    out = tmp_path / "view"
    with blank_defacer():
        result = CliRunner().invoke(app, ["view", *map(str, runs), "--out", str(out), "--status", "ok",
                                          "--defacer", DEFACER, "--cache-dir", str(cache)])
    assert result.exit_code == 0, result.output
    assert (out / VIEW_MARKER).is_file()
    single, agent = (out / "runs" / run.rid for run in load_runs(runs))  # two runs may start in the same second
    assert agent.is_dir() and not (agent / "sample").exists()  # every sample of the agent run failed
    # the ok defaced sample and the original its pair brings; the unparsable and the failed samples are not copied
    assert len(list((single / "sample").iterdir())) == 2 and len(list((single / "pair").iterdir())) == 1
    assert all('<tr><th>status</th><td class="ok">ok</td></tr>' in p.read_text() for p in (single / "sample").iterdir())
    assert len(list((single / "image").iterdir())) == 2
    with pytest.raises(PublishError, match="harness view"):
        publish(out, str(tmp_path / "published"))
    lb = tmp_path / "site"  # a view copied into a leaderboard folder is refused too
    shutil.copytree(out, lb / "extra")
    (lb / "leaderboard.json").write_text('{"schema": "harness-leaderboard/1", "boards": []}')
    with pytest.raises(PublishError, match="patient"):
        publish(lb, str(tmp_path / "published"))
    assert not (tmp_path / "published").exists()
    with blank_defacer():
        inside = CliRunner().invoke(app, ["view", str(runs[0]), "--out", str(runs[0] / "view")])
    assert inside.exit_code == 1 and "outside run folders" in str(inside.output) + str(inside.exception)


def test_cli_serves_on_a_free_local_port(made):
    _, runs, cache = made
    proc = subprocess.Popen([sys.executable, "-m", "harness", "view", str(runs[1]), "--cache-dir", str(cache)],
                            cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        line = proc.stdout.readline()
        match = re.search(r"http://127\.0\.0\.1:(\d+)/", line)
        assert match and int(match.group(1)) > 0, line + proc.stderr.read() if proc.poll() is not None else line
        [run] = load_runs([runs[1]])
        assert "budget_exceeded" in get(f"http://127.0.0.1:{match.group(1)}/runs/{run.rid}/index.html")
    finally:
        proc.terminate()
        proc.wait(timeout=10)


@needs_chromium
def test_browser_overview_and_a_filter_click_narrows_the_list(served, browser):
    view, base = served
    single, _ = rids(view)
    browser.open(f"{base}/runs/{single}/index.html")
    assert browser.evaluate("document.querySelectorAll('#grid tr').length") == 3
    assert browser.evaluate("document.getElementById('privacy-banner').offsetHeight") > 0
    browser.open(f"{base}/runs/{single}/samples.html")
    visible = "Array.from(document.querySelectorAll('#list tbody tr')).filter(r => !r.hidden).length"
    assert browser.evaluate(visible) == 5
    browser.evaluate("(() => { const s = document.querySelector('select[data-filter=status]'); s.value = 'failed';"
                     " s.dispatchEvent(new Event('change')); })()")
    assert browser.evaluate(visible) == 1 and browser.evaluate("location.search") == "?status=failed"
    browser.evaluate("document.querySelector('input[data-filter=changed]').click()")  # the failed sample has no pair
    assert browser.evaluate(visible) == 0
    browser.evaluate("(() => { const s = document.querySelector('select[data-filter=status]'); s.value = '';"
                     " s.dispatchEvent(new Event('change')); })()")
    changed = view.runs[single].changed_samples()
    assert len(changed) == 4 and browser.evaluate(visible) == len(changed)  # both pairs changed their answer
    assert browser.evaluate("location.search") == "?changed=1"
    column = """(() => { const t = document.getElementById('list'); const h = Array.from(t.tHead.rows[0].cells)
        .findIndex(c => c.textContent === 'er_abs_error'); t.tHead.rows[0].cells[h].click();
        return Array.from(t.tBodies[0].rows).map(r => r.cells[h].getAttribute('data-v')); })()"""
    up = browser.evaluate(column)
    numbers = [float(v) for v in up if v]
    assert len(numbers) == 3 and len(set(numbers)) > 1 and numbers == sorted(numbers) and up[-2:] == ["", ""]
    down = browser.evaluate(column)  # the second click sorts descending; blanks stay last
    assert [float(v) for v in down if v] == sorted(numbers, reverse=True) and down[-2:] == ["", ""]
    assert browser.problems() == []
    assert all(u.startswith(base + "/") for u in browser.requested_urls()), browser.requested_urls()


@needs_chromium
def test_browser_sample_and_pair_pages_show_images_and_transcript(served, browser):
    view, base = served
    single, agent = rids(view)
    loaded = "Array.from(document.images).map(i => i.complete && i.naturalWidth > 0)"
    sample = next(s for s in view.runs[agent].samples.values() if s.condition == "original")
    browser.open(f"{base}/runs/{agent}/sample/{slug(sample.sample_id)}.html")
    assert browser.evaluate(loaded) == [True]
    assert browser.evaluate("document.querySelectorAll('#transcript .entry').length") == len(sample.transcript)
    calls = sum(len(e.get("tool_calls") or []) for e in sample.transcript if e["type"] == "reply")
    assert calls == 17 and browser.evaluate("document.querySelectorAll('#transcript .tool-call').length") == calls
    pair = next(p for p in view.runs[single].pairs.values() if p.fidelity)
    browser.open(f"{base}/runs/{single}/pair/{slug(pair.pair_id)}.html")
    assert browser.evaluate("Array.from(document.querySelectorAll('section.side')).map(s => s.id)") == ["original", "defaced"]
    sides = browser.evaluate("Array.from(document.querySelectorAll('#pair-images td')).map(c => "
                             "[c.className, Array.from(c.querySelectorAll('img')).map(i => i.naturalWidth > 0)])")
    assert sides == [["original", [True]], ["defaced", [True]]]  # one montage each, side by side
    assert browser.evaluate("document.querySelectorAll('#fidelity tr').length") == 3  # er_abs_diff, nph_agree, dice
    assert browser.problems() == []
    assert all(u.startswith(base + "/") for u in browser.requested_urls())


def test_selection_and_unknown_status_are_checked(made):
    _, runs, _ = made
    [run] = load_runs([runs[0]])
    assert {s.condition for s in Selection(defacer=DEFACER).samples(run)} == {DEFACER}
    changed = Selection(changed=True).samples(run)
    assert all(any(run.pairs[p].changed for p in run.pair_of[s.sample_id]) for s in changed)
    _register()
    result = CliRunner().invoke(app, ["view", str(runs[0]), "--status", "done", "--out", "x"])
    assert result.exit_code == 1 and isinstance(result.exception, (HarnessError, SystemExit))


def test_a_hostile_transcript_is_shown_not_fatal(made, tmp_path):
    _, runs, cache = made
    copy = shutil.copytree(runs[0], tmp_path / "run")
    lines = (copy / "samples.jsonl").read_text().splitlines()
    record = json.loads(lines[0])
    record["transcript"] = [42, {"type": "reply", "tool_calls": "not a list", "usage": [], "text": "<script>x</script>"},
                            {"type": "tool_result", "images": [{"image_sha256": "ab", "role": "t1", "render_spec": {"plane": "evil", "slices": {"kind": "mid"}, "size": 64}},
                                                               {"image_sha256": "cd", "role": "t1", "render_spec": None},
                                                               {"image_sha256": "ef", "role": "t1", "image": "first",
                                                                "render_spec": RenderSpec().to_dict()}]},
                            {"type": "made-up", "content": "?"}]
    (copy / "samples.jsonl").write_text("\n".join([json.dumps(record)] + lines[1:]) + "\n")
    view = View(load_runs([copy]), ImageSource(cache))
    run = next(iter(view.runs.values()))
    page = view.get(f"runs/{run.rid}/sample/{slug(record['sample_id'])}.html")[1].decode()
    assert page.count('data-status="unavailable"') == 3 and "plane must be one of" in page and "not a render spec" in page
    assert "image number &#39;first&#39; is not a whole number" in page
    assert "<script>x</script>" not in page and "&lt;script&gt;x&lt;/script&gt;" in page
    assert "unreadable entry" in page and "made-up" in page
    assert view.get(f"runs/{run.rid}/image/{slug(record['sample_id'])}-0.png") is None


def test_an_encoded_label_map_in_an_answer_is_shown_by_its_size_not_its_bytes(made, tmp_path):
    """A seg-fidelity answer carries its label map (tens of kB of base64): the page says how big it is instead."""
    from harness.imaging.compact import encode_labels

    _, runs, cache = made
    copy = shutil.copytree(runs[0], tmp_path / "run")
    lines = (copy / "samples.jsonl").read_text().splitlines()
    record = json.loads(lines[0])
    labels = np.random.default_rng(0).integers(0, 50, (30, 30, 30))
    record["answer"] = {**(record.get("answer") or {}), "labels": encode_labels(labels)}
    (copy / "samples.jsonl").write_text("\n".join([json.dumps(record)] + lines[1:]) + "\n")
    view = View(load_runs([copy]), ImageSource(cache))
    run = next(iter(view.runs.values()))
    page = view.get(f"runs/{run.rid}/sample/{slug(record['sample_id'])}.html")[1].decode()
    data = record["answer"]["labels"]["data"]
    assert data[:40] not in page and f"[{len(data):,} characters of encoded label map voxels, not shown]" in page
    assert '"voxels": ' + str(int(np.count_nonzero(labels))) in page  # the rest of the encoding stays readable
