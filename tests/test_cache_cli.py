"""`harness cache`: what the local cache holds, and clearing kinds of it without touching anything else."""

from __future__ import annotations

from typer.testing import CliRunner

from harness.cli import _register, app
from harness.core.cache_folders import BY_NAME, usage

_register()


def _cache(tmp_path):
    folder = tmp_path / "cache"
    (folder / "defaced" / "ab").mkdir(parents=True)
    (folder / "defaced" / "ab" / "vol.nii.gz").write_bytes(b"x" * 3000)
    (folder / "face-attack").mkdir()
    (folder / "face-attack" / "k.json").write_text("{}")
    (folder / "cohorts").mkdir()
    (folder / "cohorts" / "c.nii.gz").write_bytes(b"y" * 10)
    (folder / "responses.sqlite").write_bytes(b"z" * 100)
    (folder / "responses.sqlite-wal").write_bytes(b"w" * 50)
    (folder / "mine").mkdir()  # not the harness's
    (folder / "mine" / "notes.txt").write_text("keep me")
    return folder


def test_usage_lists_each_kind_and_what_is_not_the_harnesss(tmp_path):
    found = {u.path.name: u for u in usage(_cache(tmp_path))}
    assert found["defaced"].files == 1 and found["defaced"].bytes == 3000 and found["defaced"].kind.faces
    assert found["responses.sqlite"].bytes == 150 and found["responses.sqlite"].files == 2  # the log belongs to it
    assert found["mine"].kind is None and "responses.sqlite-wal" not in found
    shown = CliRunner().invoke(app, ["cache", "--cache-dir", str(tmp_path / "cache")])
    assert shown.exit_code == 0 and "defaced" in shown.output and "not written by the harness" in shown.output


def test_clear_faces_removes_exactly_the_face_kinds(tmp_path):
    folder = _cache(tmp_path)
    result = CliRunner().invoke(app, ["cache", "clear", "--faces", "--yes", "--cache-dir", str(folder)])
    assert result.exit_code == 0, result.output
    assert not (folder / "defaced").exists() and not (folder / "face-attack").exists()
    assert (folder / "cohorts" / "c.nii.gz").exists() and (folder / "responses.sqlite").exists()
    assert (folder / "mine" / "notes.txt").read_text() == "keep me"
    assert "3.0 kB freed" in result.output


def test_clear_asks_first_and_refuses_what_it_does_not_know(tmp_path):
    folder = _cache(tmp_path)
    declined = CliRunner().invoke(app, ["cache", "clear", "responses.sqlite", "--cache-dir", str(folder)], input="n\n")
    assert declined.exit_code == 1 and (folder / "responses.sqlite").exists()
    cleared = CliRunner().invoke(app, ["cache", "clear", "responses.sqlite", "--cache-dir", str(folder)], input="y\n")
    assert cleared.exit_code == 0 and not (folder / "responses.sqlite").exists()
    assert not (folder / "responses.sqlite-wal").exists()
    unknown = CliRunner().invoke(app, ["cache", "clear", "mine", "--yes", "--cache-dir", str(folder)])
    assert unknown.exit_code != 0 and "unknown cache kind mine" in str(unknown.exception or unknown.output)
    assert (folder / "mine" / "notes.txt").exists()
    nothing = CliRunner().invoke(app, ["cache", "clear", "--yes", "--cache-dir", str(folder)])
    assert nothing.exit_code != 0 and (folder / "cohorts").exists()
    assert set(BY_NAME) >= {"defaced", "face-attack", "renders", "converted"}
