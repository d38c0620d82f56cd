"""The built site in headless Chromium (Debian's chromium; skipped when absent, never installed here): pages load
without console errors, request nothing but local files, show their images, and tables sort when a header is
clicked."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from leaderboard import build
from tests.chromium_cdp import CHROMIUM, Chromium
from tests.test_leaderboard import TASKS, _runs

pytestmark = pytest.mark.skipif(not Path(CHROMIUM).exists(),
                                reason=f"{CHROMIUM} not found (CI installs Debian's chromium package)")

COLUMN_VALUES = """(() => {
  const t = document.querySelector('table.sortable');
  const col = Array.from(t.tHead.rows[0].cells).findIndex(h => h.textContent.startsWith(%r));
  t.tHead.rows[0].cells[col].click();
  return Array.from(t.tBodies[0].rows).map(r => r.cells[col].getAttribute('data-v'));
})()"""


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    root = tmp_path_factory.mktemp("site")
    build(_runs(root), root / "site", tasks=TASKS, salt_dir=root / "salts")
    return root / "site"


@pytest.fixture
def browser(tmp_path):
    with Chromium(tmp_path / "profile") as chromium:
        yield chromium


@pytest.mark.parametrize("page", ["index.html", "toy-measure.html"])
def test_page_loads_cleanly_with_its_images(site, browser, page):
    browser.open((site / page).as_uri())
    assert browser.evaluate("document.querySelectorAll('table.sortable tbody tr').length") >= 2
    images = browser.evaluate("Array.from(document.images).map(i => [i.getAttribute('src'), i.complete && i.naturalWidth > 0])")
    if page != "index.html":
        assert len(images) >= 3 and all(ok for _, ok in images), images
    links = browser.evaluate("Array.from(document.querySelectorAll('a[href]')).map(a => a.getAttribute('href'))")
    assert links and all(not h.startswith(("http:", "https:", "//")) for h in links)
    assert all(not h.startswith("/") and (site / h).exists() for h in links), links  # relative, present
    assert browser.problems() == []
    assert {u.split(":", 1)[0] for u in browser.requested_urls()} == {"file"}


def test_tables_sort_on_header_click(site, browser):
    browser.open((site / "toy-measure.html").as_uri())
    ascending = [float(v) for v in browser.evaluate(COLUMN_VALUES % "Δ abs_error")]
    assert ascending == sorted(ascending) and ascending[0] < ascending[-1]
    descending = [float(v) for v in browser.evaluate(COLUMN_VALUES % "Δ abs_error")]
    assert descending == sorted(ascending, reverse=True)
    models = browser.evaluate("""(() => { const t = document.querySelector('table.sortable');
        t.tHead.rows[0].cells[0].click(); t.tHead.rows[0].cells[0].click();
        return [t.tHead.rows[0].cells[0].getAttribute('aria-sort'),
                Array.from(t.tBodies[0].rows).map(r => r.cells[0].textContent)]; })()""")
    assert models == ["descending", ["m2", "m1"]]
    assert browser.problems() == []


def test_broken_page_is_detected(site, browser, tmp_path):
    """The checks above can fail: a missing image and a console error are reported."""
    broken = tmp_path / "broken"
    shutil.copytree(site, broken)
    page = broken / "toy-measure.html"
    page.write_text(page.read_text().replace("</main>", '<img src="plots/missing.png" alt="x"><script>console.error("boom")</script></main>'))
    browser.open(page.as_uri())
    problems = " ".join(browser.problems())
    assert "boom" in problems and "missing.png" in problems
