"""harness.toml: one reader (harness.core.config) for the model profiles and the `harness eval` defaults."""

from __future__ import annotations

import pytest
from typer.testing import CliRunner

from harness.cli import _register, app
from harness.cli.eval import _config_models
from harness.core.config import ConfigError, HarnessConfig, load_config
from harness.models import ModelConfigError, load_profiles

_register()

TEAM = '[models.qwen]\nspec = "vllm:Qwen/Qwen2.5-VL-7B-Instruct"\nmax_images = 8\n\n[eval]\nmodels = ["qwen", "scripted:nph-evans"]\n'


def test_one_file_gives_profiles_and_eval_defaults(tmp_path, monkeypatch):
    (tmp_path / "team.toml").write_text(TEAM)
    cfg = load_config(tmp_path / "team.toml")
    assert cfg.path == tmp_path / "team.toml" and cfg.models["qwen"]["max_images"] == 8
    assert cfg.eval_models == ["qwen", "scripted:nph-evans"] == _config_models(tmp_path / "team.toml")
    assert load_profiles(cfg)["qwen"].max_images == 8 == load_profiles(tmp_path / "team.toml")["qwen"].max_images
    monkeypatch.chdir(tmp_path)
    assert load_config() == HarnessConfig() and _config_models(None) == [] and load_profiles() == {}  # no ./harness.toml
    (tmp_path / "harness.toml").write_text(TEAM)
    assert load_config().eval_models == _config_models(None) == ["qwen", "scripted:nph-evans"]
    assert list(load_profiles()) == ["qwen"]


def test_eval_models_may_be_one_string_but_nothing_else(tmp_path):
    (tmp_path / "one.toml").write_text('[eval]\nmodels = "scripted:nph-evans"\n')
    assert load_config(tmp_path / "one.toml").eval_models == ["scripted:nph-evans"]
    (tmp_path / "bad.toml").write_text("[eval]\nmodels = [1, 2]\n")
    with pytest.raises(ConfigError, match=r"bad.toml: \[eval\] models must be a list"):
        _config_models(tmp_path / "bad.toml")
    (tmp_path / "flat.toml").write_text('models = "qwen"\n')
    with pytest.raises(ModelConfigError, match=r"flat.toml: \[models\] must be a table of profiles"):
        load_profiles(tmp_path / "flat.toml")


@pytest.mark.parametrize("content, problem", [(None, "config file not found"), ("[models.x\n", "not valid TOML")])
def test_a_missing_or_broken_file_is_one_error_naming_it_wherever_it_is_read(tmp_path, content, problem):
    path = tmp_path / "team.toml"
    if content is not None:
        path.write_text(content)
    expected = f"{path}: {problem}"
    with pytest.raises(ConfigError) as direct:
        load_config(path)
    with pytest.raises(ModelConfigError) as profiles:
        load_profiles(path)
    with pytest.raises(ConfigError) as eval_default:
        _config_models(path)
    assert all(str(e.value).startswith(expected) for e in (direct, profiles, eval_default))
    listing = CliRunner().invoke(app, ["models", "--config", str(path)])
    assert listing.exit_code != 0 and str(listing.exception).startswith(expected)
