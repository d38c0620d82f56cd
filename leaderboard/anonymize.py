"""What a published leaderboard must never hold, and the tools that keep it out.

Never published: renders or volumes of original data (the build writes only plots and tables, and publish copies
only the file types in PUBLISHABLE), case ids (replaced by a salted hash: HMAC-SHA256 with a secret salt per cohort,
kept outside the leaderboard folder, so ids cannot be recovered by hashing a public case list), prompts and
transcripts (never read by the build), API keys (harness.store.manifest.redact, then a scan) and local paths (shown as
<local>/name).
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
from pathlib import Path

from harness.core.config import default_cache_dir
from harness.core.errors import HarnessError
from harness.core.redact import KEY_PATTERNS, redact
from harness.imaging.face_render import FACE_RENDER_MARK
from leaderboard.built_files import files_of

# Files a leaderboard folder may hold; anything else (volumes, renders of original data, pickles) is never copied.
PUBLISHABLE = {".html", ".css", ".js", ".png", ".svg", ".csv", ".json", ".md", ".parquet", ".txt"}
MIN_SCANNED_ID = 6  # shorter case ids ("1", "A") would match everywhere; they are still never written

# An absolute path: /a/b, ~/a, C:\a (not a URL: no scheme or host before the slash).
_PATH = re.compile(r"(?<![\w:/.<>-])(?:~|[A-Za-z]:)?[/\\](?:[\w.\-+@ ]+[/\\])*[\w.\-+@]+")
_LOCAL_PREFIXES = ("/home/", "/root/", "/Users/", "/tmp/", "/work/", "/data/", "/mnt/", "/scratch/", "/var/",
                   "/media/", "/srv/", "/opt/", "/private/", "~/", "C:\\")


class LeakError(HarnessError):
    """The leaderboard output holds something that must not be published; names the file and what was found."""


def scrub_paths(text: str) -> str:
    """`text` with absolute local paths replaced by <local>/basename (the name stays readable, the place goes)."""
    def repl(m: re.Match) -> str:
        path = m.group(0)
        if path.count("/") + path.count("\\") < 2 and not path.startswith(("~", "/home", "/root", "/Users")):
            return path  # "/s", "1/2", units such as "mm/s" are not paths
        name = re.split(r"[/\\]", path)[-1]  # a match never ends with a separator
        return f"<local>/{name}"
    return _PATH.sub(repl, text)


def clean(obj):
    """A copy of manifest facts safe to publish: secrets redacted, local paths scrubbed."""
    obj = redact(obj)
    if isinstance(obj, dict):
        return {str(k): clean(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [clean(v) for v in obj]
    if isinstance(obj, str):
        return scrub_paths(obj)
    return obj


def cohort_salt(cohort_hash: str, salt_dir: Path | None = None) -> bytes:
    """The secret salt of one cohort, created on first use under the harness cache (never inside a leaderboard)."""
    folder = Path(salt_dir) if salt_dir else default_cache_dir() / "leaderboard-salts"
    path = folder / f"{hashlib.sha256(cohort_hash.encode()).hexdigest()[:32]}.salt"
    try:
        return bytes.fromhex(path.read_text().strip())
    except FileNotFoundError:
        pass
    except (OSError, ValueError) as exc:
        raise HarnessError(f"{path}: cannot read the cohort salt ({exc}); delete it to make a new one") from exc
    folder.mkdir(parents=True, exist_ok=True)
    salt = secrets.token_bytes(16)
    path.write_text(salt.hex() + "\n")
    path.chmod(0o600)
    return salt


def hash_case(case_id: str, salt: bytes) -> str:
    return hmac.new(salt, case_id.encode(), hashlib.sha256).hexdigest()[:16]


def scan(folder: Path, forbidden=()) -> list[str]:
    """Findings ("file: what") for every forbidden string (case ids, local paths, secrets), API-key-looking text,
    file type that is not publishable and link under `folder`. Empty = clean."""
    folder = Path(folder)
    needles = sorted({str(f) for f in forbidden if f and len(str(f)) >= MIN_SCANNED_ID}, key=len, reverse=True)
    files, links = files_of(folder)  # a link is never followed: what it points to is not the leaderboard's to publish
    findings = [f"{p.relative_to(folder)}: is a link; links are never published" for p in links]
    for path in files:
        rel = path.relative_to(folder)
        if path.suffix.lower() not in PUBLISHABLE:
            findings.append(f"{rel}: file type {path.suffix or '(none)'} is not publishable")
            continue
        binary = path.suffix.lower() == ".png"
        text = _text_of(path)
        if binary and FACE_RENDER_MARK in text:
            findings.append(f"{rel}: is a face render (it shows a face); face renders are never published")
        for needle in needles:
            if needle in text:
                findings.append(f"{rel}: contains {needle[:4]}... (a forbidden string)")
        for pattern in KEY_PATTERNS:
            if m := pattern.search(text):
                findings.append(f"{rel}: contains a secret-looking value ({m.group(0)[:6]}...)")
        for prefix in () if binary else _LOCAL_PREFIXES:  # compressed pixels make random "~/x"
            if re.search(r"(?<![\w<.:/-])" + re.escape(prefix) + r"\w", text):  # after a tag too: <p>/data/x
                findings.append(f"{rel}: contains a local path ({prefix}...)")
                break
    return findings


def _text_of(path: Path) -> str:
    """What a reader of the file could see: text as is, PNG bytes (text chunks are stored uncompressed), Parquet
    decoded (its pages may be compressed) with its schema metadata."""
    if path.suffix.lower() == ".parquet":
        import json

        import pyarrow.parquet as pq

        table = pq.read_table(path)
        meta = {k.decode(errors="replace"): v.decode(errors="replace") for k, v in (table.schema.metadata or {}).items()}
        return json.dumps([table.column_names, meta, table.to_pylist()], default=str, ensure_ascii=False)
    data = path.read_bytes()
    return data.decode("latin-1") if path.suffix.lower() == ".png" else data.decode("utf-8", errors="replace")


def check_clean(folder: Path, forbidden=(), also=()) -> None:
    """LeakError listing the scan's findings and `also` (findings of other checks on the same folder), if any."""
    findings = [*also, *scan(folder, forbidden)]
    if findings:
        shown = "\n  ".join(findings[:20])
        raise LeakError(f"{folder}: refusing to publish, {len(findings)} finding(s):\n  {shown}")
