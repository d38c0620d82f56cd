"""Stage progress: counts, failures and ETA per stage, as rich bars or plain lines for CI logs."""

from __future__ import annotations

import io
import threading
import time

from harness.engine.progress import StageProgress, format_duration


def test_quiet_mode_prints_periodic_plain_lines_and_a_final_one():
    out = io.StringIO()
    with StageProgress({"deface": 4, "render": 6, "model": 12, "score": 12}, quiet=True, interval=0.05, file=out) as p:
        p.advance("deface", 2)
        p.advance("deface", failed=True)
        p.advance("render", 6)
        time.sleep(0.2)
    lines = out.getvalue().splitlines()
    assert len(lines) >= 3  # periodic lines while nothing else happens, then the last one
    last = lines[-1]
    assert last.startswith("progress 0:00:0")
    assert "deface 3/4 (1 failed) eta " in last
    assert "render 6/6 |" in last and "model 0/12" in last and "score 0/12" in last
    assert "\x1b[" not in out.getvalue()  # no terminal escapes in CI logs


def test_not_a_terminal_means_quiet():
    assert StageProgress({"model": 1}, file=io.StringIO()).quiet


def test_eta_follows_the_rate_so_far():
    p = StageProgress({"model": 10}, quiet=True, file=io.StringIO())
    p._t0 = time.monotonic() - 20.0  # 20 s in, 4 of 10 done -> 30 s left
    p.advance("model", 4)
    snap = p.snapshot()["model"]
    assert (snap.total, snap.done, snap.failed) == (10, 4, 0)
    assert 29.0 < snap.eta < 31.5
    assert p.snapshot()["score"].eta is None  # nothing finished yet


def test_counts_are_exact_under_concurrent_updates_and_totals_can_grow():
    p = StageProgress({"model": 800}, quiet=True, file=io.StringIO())

    def work(k):
        for j in range(100):
            p.advance("model", failed=(j % 10 == 0))

    threads = [threading.Thread(target=work, args=(k,)) for k in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    p.add_total("render", 3)
    p.advance("agent-tools", 2)  # a stage nobody planned still shows up
    snap = p.snapshot()
    assert (snap["model"].done, snap["model"].failed) == (800, 80)
    assert snap["render"].total == 3 and snap["agent-tools"].done == 2


def test_rich_bars_render_every_stage_with_failures():
    out = io.StringIO()
    from rich.console import Console

    console = Console(file=out, force_terminal=True, width=120)
    p = StageProgress({"deface": 2, "render": 2, "model": 4, "score": 4}, console=console)
    assert not p.quiet  # a terminal gets bars
    with p:
        p.advance("deface", 2)
        p.advance("model", 1, failed=True)
        p.log("case c1 failed: timeout")
    text = out.getvalue()
    for stage in ("deface", "render", "model", "score"):
        assert stage in text
    assert "2/2" in text and "1 failed" in text and "case c1 failed: timeout" in text


def test_format_duration():
    assert format_duration(3725.4) == "1:02:05" and format_duration(None) == "?"
