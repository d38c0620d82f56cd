"""Model replicas: a profile with several base URLs spreads requests over live replicas (fewest outstanding first,
each with its own concurrency limit); a replica killed mid-run leaves the rotation, its in-flight requests are
answered by the others, and it comes back once a probe finds it listening again. Cache keys and sample ids are the
same whichever replica answers. The replicas are real servers in child processes, ended by PID."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import time

import pytest

from harness.core.config import load_config
from harness.models import Message, create_model, parse_model_spec, resolve_model_spec
from harness.models.response_cache import request_key
from harness.models.types import ModelConfigError, Sampling
from tests.fixtures.stub_replica import start_replica
from tests.ray_cluster import free_port

LATENCY_S = 0.2


@pytest.fixture
def replicas():
    ports = [free_port() for _ in range(3)]
    processes = [start_replica(p, LATENCY_S, "Evans ratio 0.31") for p in ports]
    try:
        yield [f"http://127.0.0.1:{p}/v1" for p in ports], processes, ports
    finally:
        for p in processes:
            if p.poll() is None:
                os.kill(p.pid, signal.SIGKILL)
            p.wait()


def ask(model, n: int):
    async def main():
        try:
            return await asyncio.gather(*(model.chat([Message.user(f"question {i}")]) for i in range(n)))
        finally:
            await model.aclose()

    return main()


def test_requests_spread_over_replicas_each_with_its_own_limit(replicas):
    urls, _, _ = replicas
    model = create_model(parse_model_spec("openai-compatible:stub", base_urls=urls, max_concurrency=2))
    t0 = time.perf_counter()
    answers = asyncio.run(ask(model, 12))
    wall = time.perf_counter() - t0
    assert [a.text for a in answers] == ["Evans ratio 0.31"] * 12
    assert [r.served for r in model.replicas.replicas] == [4, 4, 4]
    # 2 at a time on each of 3 replicas: 12 requests take two rounds of LATENCY_S, not one (no shared limit of 6
    # ignored) and not six (the limit is per replica, not per model)
    assert 2 * LATENCY_S <= wall < 5 * LATENCY_S


def test_replica_killed_mid_run_the_run_completes_on_the_other_two_and_it_comes_back(replicas):
    urls, processes, ports = replicas
    model = create_model(parse_model_spec("openai-compatible:stub", base_urls=urls, max_concurrency=4, max_retries=0))
    model.replicas.probe_after_s = 0.3
    victim = model.replicas.replicas[1]

    async def main():
        requests = [asyncio.create_task(model.chat([Message.user(f"question {i}")])) for i in range(24)]
        while victim.outstanding == 0:  # the victim holds requests in flight when it dies
            await asyncio.sleep(0.01)
        await asyncio.sleep(LATENCY_S / 4)
        os.kill(processes[1].pid, signal.SIGKILL)
        answers = await asyncio.gather(*requests)
        assert not victim.live
        served_before = victim.served
        processes[1].wait()
        processes[1] = start_replica(ports[1], LATENCY_S, "Evans ratio 0.31")  # back on the same port
        deadline = time.monotonic() + 10
        while not victim.live and time.monotonic() < deadline:
            model.replicas.pick()  # picking is what starts a due probe
            await asyncio.sleep(0.05)
        assert victim.live
        more = await asyncio.gather(*(model.chat([Message.user(f"again {i}")]) for i in range(6)))
        await model.aclose()
        return answers, served_before, more

    answers, served_before, more = asyncio.run(main())
    # max_retries=0: every answer came without a retry; the killed replica's requests moved to the others
    assert [a.text for a in answers] == ["Evans ratio 0.31"] * 24
    others = sum(r.served for r in model.replicas.replicas if r is not victim)
    assert others >= 24 - served_before + 1  # some request the victim took was answered elsewhere
    assert [a.text for a in more] == ["Evans ratio 0.31"] * 6 and victim.served > served_before


def test_cache_keys_and_identities_do_not_depend_on_the_replicas(tmp_path):
    urls = ["http://a:8000/v1", "http://b:8000/v1", "http://c:8000/v1"]
    one = parse_model_spec("openai-compatible:stub", base_url=urls[0])
    three = parse_model_spec("openai-compatible:stub", base_urls=urls)
    assert three.base_url == urls[0] and three.replicas == tuple(urls) and three.endpoint == one.endpoint
    messages = [Message.user("q")]
    assert request_key(one, messages, [], Sampling()) == request_key(three, messages, [], Sampling())
    config = tmp_path / "harness.toml"
    config.write_text('[models.qwen]\nspec = "vllm:Qwen/Qwen2.5-VL-7B-Instruct"\nbase_urls = ["http://g1:8000/v1/", "http://g2:8000/v1"]\n')
    profile = resolve_model_spec("qwen", load_config(config))
    assert profile.replicas == ("http://g1:8000/v1", "http://g2:8000/v1") and profile.base_url == "http://g1:8000/v1"
    # repeated --base-url on the command line replaces the profile's replicas
    assert resolve_model_spec("qwen", load_config(config), base_urls=urls).replicas == tuple(urls)
    assert resolve_model_spec("qwen", load_config(config), base_url=urls[2]).replicas == ()
    with pytest.raises(ModelConfigError, match="both base_url and base_urls"):
        parse_model_spec("openai-compatible:stub", base_url=urls[0], base_urls=urls)
    with pytest.raises(ModelConfigError, match="lists a URL twice"):
        parse_model_spec("openai-compatible:stub", base_urls=[urls[0], urls[0] + "/"])


def test_an_eval_run_completes_when_a_replica_dies_and_its_answers_do_not_depend_on_the_replicas(tmp_path):
    """The runner's view: three replicas, one killed while it holds requests; every sample is answered by the other
    two, and a second run against one server finds every answer in the response cache under the same sample ids."""
    import threading

    from harness.data.sample_cohort import write_sample_cohort
    from harness.engine.runner import EvalConfig, Runner
    from harness.results.run_summary import summarize_run
    from tests import runner_fixtures

    cohort = write_sample_cohort("nph-evans", n=4, seed=3, out=tmp_path / "cohort", resolution_scale=2.6)
    ports = [free_port() for _ in range(3)]
    logs = [tmp_path / f"replica{i}.log" for i in range(3)]
    stubs = [start_replica(p, 0.5, '{"evans_ratio": 0.31}', log) for p, log in zip(ports, logs)]
    urls = [f"http://127.0.0.1:{p}/v1" for p in ports]

    def kill_the_second_once_it_has_a_request():
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if logs[1].exists() and logs[1].read_text():
                os.kill(stubs[1].pid, signal.SIGKILL)
                return
            time.sleep(0.01)

    def run(**urls_given):
        cfg = EvalConfig(tasks=["nph-evans"], defacers=[], models=["openai-compatible:stub"], cohort=str(cohort),
                         out=tmp_path / "runs", cache_dir=tmp_path / "cache", quiet=True, workers=0, new_run=True,
                         max_retries=0, **urls_given)
        with runner_fixtures.install():
            return Runner(cfg, argv=["harness", "eval", "--test"]).run(summarize=summarize_run)

    killer = threading.Thread(target=kill_the_second_once_it_has_a_request, daemon=True)
    try:
        killer.start()
        first = run(base_url=urls[0], base_urls=urls)
        killer.join(5)
        assert stubs[1].poll() is not None  # the replica died during the run
        assert first.counts == {"ok": 4, "unparsable": 0, "failed": 0} and first.model_calls == 4
        again = run(base_url=urls[2])  # another single server of the same model: not the deployment's name
        assert again.model_calls == 4  # so its answers are its own
        same = run(base_url=urls[0])  # the deployment's first URL alone: the same model as the three replicas
        assert same.model_calls == 0 and same.counts == first.counts
        ids = [{json.loads(line)["sample_id"] for line in (r.run_dir / "samples.jsonl").read_text().splitlines()}
               for r in (first, same)]
        assert ids[0] == ids[1]
    finally:
        for s in stubs:
            if s.poll() is None:
                os.kill(s.pid, signal.SIGKILL)
            s.wait()
