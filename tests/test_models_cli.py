"""`harness models` as a user runs it."""

from __future__ import annotations


from PIL import Image
from typer.testing import CliRunner

from harness.cli import _register, app
from tests.fixtures.fake_openai import FakeOpenAI

_register()
runner = CliRunner()


def test_models_lists_profiles_and_backends(tmp_path):
    cfg = tmp_path / "team.toml"
    cfg.write_text('[models.qwen7b]\nspec = "vllm:Qwen/Qwen2.5-VL-7B-Instruct"\nbase_url = "http://gpu:8000/v1"\nmax_images = 8\n')
    out = runner.invoke(app, ["models", "--config", str(cfg)])
    assert out.exit_code == 0, out.output
    assert "qwen7b  vllm:Qwen/Qwen2.5-VL-7B-Instruct  base_url=http://gpu:8000/v1 max_images=8" in out.output
    assert "inspect-then-submit" in out.output and "vllm-local" in out.output


def test_models_check_sends_one_request_with_an_image(tmp_path):
    png = tmp_path / "slice.png"
    Image.new("L", (800, 600), 50).save(png)
    with FakeOpenAI(default=("ok", "ready")) as fake:
        cfg = tmp_path / "harness.toml"
        cfg.write_text(f'[models.local]\nspec = "openai-compatible:tiny"\nbase_url = "{fake.base_url}"\nmax_pixels = 120000\n')
        out = runner.invoke(app, ["models", "check", "local", "--config", str(cfg), "--image", str(png)])
        before = runner.invoke(app, ["models", "--config", str(cfg), "check", "local"])  # --config on the group
    assert out.exit_code == 0, out.output
    assert "reply:    'ready'" in out.output and "downscaled image" in out.output and "800x600" in out.output
    sent = fake.images_in(fake.requests[0])
    assert len(sent) == 1 and fake.requests[0]["model"] == "tiny"
    assert before.exit_code == 0 and "reply:    'ready'" in before.output, before.output


def test_models_check_failure_is_one_line_with_reason(tmp_path):
    with FakeOpenAI(default=("status", 400, {}, "model does not exist")) as fake:
        out = runner.invoke(app, ["models", "check", "openai-compatible:nope", "--base-url", fake.base_url])
    assert out.exit_code != 0
    assert "bad_request" in str(out.exception) and "model does not exist" in str(out.exception)
