"""Run manifest: provenance facts, and secrets never written."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from harness.core.redact import REDACTED, is_secret_name, redact
from harness.store.manifest import build_manifest, git_facts, names_of
from harness.store.run_store import RunStore

OPENAI_KEY = "sk-proj-Abc123Def456Ghi789Jkl012"
HF_TOKEN = "hf_AbCdEfGhIjKlMnOpQrStUv"


def test_secret_names_are_redacted_and_their_presence_is_kept():
    config = {
        "model": {"base_url": "http://localhost:8000/v1", "api_key": "anything-at-all", "max_tokens": 512},
        "headers": {"Authorization": "Basic dXNlcjpwYXNz", "X-Request-Id": "7"},
        "HF_TOKEN": HF_TOKEN, "dbPassword": "hunter22", "client_secret": "s3cr3t", "openaiApiKey": "zzz",
        "empty_key": None, "use_auth": True,
        "cache_key": "ab" * 32, "tokens": {"prompt": 10, "completion": 5}, "tokenizer": "bpe",
    }
    out = redact(config)
    assert out["model"] == {"base_url": "http://localhost:8000/v1", "api_key": REDACTED, "max_tokens": 512}
    assert out["headers"] == {"Authorization": REDACTED, "X-Request-Id": "7"}
    for name in ("HF_TOKEN", "dbPassword", "client_secret", "openaiApiKey"):
        assert out[name] == REDACTED, name
    assert out["empty_key"] is None and out["use_auth"] is True  # nothing to hide
    assert out["cache_key"] == config["cache_key"] and out["tokens"] == config["tokens"] and out["tokenizer"] == "bpe"
    assert config["model"]["api_key"] == "anything-at-all"  # the caller's config is not changed


def test_key_looking_values_are_redacted_anywhere():
    text = redact({"notes": [f"key={OPENAI_KEY}", f"use {HF_TOKEN} here", "Bearer abcdefgh12345678",
                             "https://user:pa55word@example.org/v1", "plain words sk- and skip"]})
    assert text["notes"] == [f"key={REDACTED}", f"use {REDACTED} here", f"Bearer {REDACTED}",
                             f"https://user:{REDACTED}@example.org/v1", "plain words sk- and skip"]


def test_command_line_secret_options_lose_their_values():
    argv = ["eval", "--api-key", "abc123456789", "--token=xyz987654321", "--model", "gpt", "--max-tokens", "64"]
    assert redact(argv) == ["eval", "--api-key", REDACTED, f"--token={REDACTED}", "--model", "gpt",
                            "--max-tokens", "64"]


def test_secret_environment_values_are_redacted_whatever_their_shape(monkeypatch):
    monkeypatch.setenv("VLLM_API_KEY", "plainlookingvalue42")
    assert redact({"cmd": "curl -H 'x: plainlookingvalue42'"}) == {"cmd": f"curl -H 'x: {REDACTED}'"}


def test_secret_name_rules():
    assert all(is_secret_name(n) for n in ("api_key", "apiKey", "OPENAI_API_KEY", "--api-key", "token", "x-auth",
                                             "secret", "password", "aws_secret_access_key"))
    assert not any(is_secret_name(n) for n in ("max_tokens", "cache_key", "keyframe", "monkey", "author", "model"))


def test_built_manifest_has_provenance_and_no_secrets(tmp_path, monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", OPENAI_KEY)
    manifest = build_manifest({"api_key": OPENAI_KEY, "seed": 7}, tasks=["ct-report"],
                              defacers={"original": {"version": "1"}, "reface": {"version": "0.3"}},
                              models=["openai:gpt"], seeds={"bootstrap": 7}, argv=["eval", f"--api-key={OPENAI_KEY}"])
    assert manifest["harness"]["version"]
    assert manifest["packages"]["numpy"] and manifest["machine"]["cpu_count"] >= 1
    assert manifest["seeds"] == {"bootstrap": 7} and manifest["started_at"].endswith("Z")
    assert names_of(manifest["defacers"]) == ["original", "reface"] and names_of(manifest["tasks"]) == ["ct-report"]
    run = tmp_path / "run"
    with RunStore.open(run, manifest) as store:
        store.update_manifest(note=f"resumed with {OPENAI_KEY}", extra={"token": "whatever-it-is"})
    written = (run / "manifest.json").read_text()
    assert OPENAI_KEY not in written and "whatever-it-is" not in written
    assert json.loads(written)["config"] == {"api_key": REDACTED, "seed": 7}


def test_a_raw_manifest_is_redacted_before_it_is_written(tmp_path):
    with RunStore.open(tmp_path / "run", {"config": {"token": "abcdefgh"}}):
        pass
    assert "abcdefgh" not in (tmp_path / "run" / "manifest.json").read_text()


def test_git_facts(tmp_path):
    assert git_facts(tmp_path) == {}  # not a checkout
    repo = Path(__file__).resolve().parent.parent
    if not (repo / ".git").exists():
        pytest.skip("not running from a git checkout")
    facts = git_facts()
    assert len(facts["git_sha"]) == 40 and isinstance(facts["git_dirty"], bool)
