"""In-process vLLM (`vllm-local:PATH_OR_ID`): an offline engine fed in batches (optional extra: pip install
'defacing-harness[vllm]'). Concurrent chat() calls that arrive within a few milliseconds share one generate pass.
"""

from __future__ import annotations

import asyncio
import time

from harness.core.failures import FailureKind
from harness.models.backends import register_backend
from harness.models.base import ChatModel
from harness.models.types import ModelConfigError, ModelError, Reply, Usage
from harness.models.wire import to_openai_messages

BATCH_WINDOW_S = 0.005
MAX_BATCH = 256


def _import_vllm():
    try:
        import vllm  # noqa: F401
    except ImportError as exc:
        raise ModelConfigError(
            "the vllm-local backend needs vLLM, which is not installed (pip install 'defacing-harness[vllm]' on a GPU "
            f"machine), or serve the model with `vllm serve` and use vllm:MODEL instead ({exc})"
        ) from None
    return vllm


@register_backend
class VLLMLocalModel(ChatModel):
    name = "vllm-local"
    description = "in-process vLLM engine, batched (GPU; pip install 'defacing-harness[vllm]')"

    def __init__(self, spec, cache=None):
        super().__init__(spec, cache)
        self._vllm = _import_vllm()
        self._llm = None
        self._queue: asyncio.Queue | None = None
        self._worker: asyncio.Task | None = None

    @property
    def native_tools(self) -> bool:
        return False

    def _engine(self):
        if self._llm is None:
            kw = {"revision": self.spec.revision} if self.spec.revision else {}
            if self.spec.max_images:
                kw["limit_mm_per_prompt"] = {"image": self.spec.max_images}
            self._llm = self._vllm.LLM(model=self.spec.model, **kw)
        return self._llm

    def _run_batch(self, batch):
        llm = self._engine()
        convs = [to_openai_messages(m, native_tools=False) for m, _, _ in batch]
        params = [
            self._vllm.SamplingParams(
                temperature=s.temperature, max_tokens=s.max_tokens, top_p=s.top_p if s.top_p is not None else 1.0,
                seed=s.seed, stop=list(s.stop) or None,
            )
            for _, s, _ in batch
        ]
        return llm.chat(convs, params, use_tqdm=False)

    async def _serve_batches(self):
        while True:
            first = await self._queue.get()
            batch = [first]
            deadline = time.perf_counter() + BATCH_WINDOW_S
            while len(batch) < MAX_BATCH:
                timeout = deadline - time.perf_counter()
                if timeout <= 0:
                    break
                try:
                    batch.append(await asyncio.wait_for(self._queue.get(), timeout))
                except asyncio.TimeoutError:
                    break
            t0 = time.perf_counter()
            try:
                outputs = await asyncio.to_thread(self._run_batch, batch)
            except Exception as exc:  # the whole batch fails with a recorded reason
                for _, _, fut in batch:
                    if not fut.done():
                        fut.set_exception(ModelError(FailureKind.BACKEND_ERROR, f"vLLM: {type(exc).__name__}: {str(exc)[:300]}"))
                continue
            latency = time.perf_counter() - t0
            for (_, _, fut), out in zip(batch, outputs):
                gen = out.outputs[0]
                reply = Reply(
                    text=gen.text,
                    usage=Usage(len(out.prompt_token_ids or []), len(gen.token_ids)),
                    latency_s=latency,
                    finish_reason=gen.finish_reason,
                    raw_id=str(out.request_id),
                )
                if not fut.done():
                    fut.set_result(reply)

    async def _complete(self, messages, tools, sampling) -> Reply:
        if self._queue is None:
            self._queue = asyncio.Queue()
            self._worker = asyncio.get_running_loop().create_task(self._serve_batches())
        fut = asyncio.get_running_loop().create_future()
        await self._queue.put((messages, sampling, fut))
        return await fut

    async def aclose(self) -> None:
        if self._worker is not None:
            self._worker.cancel()
            self._worker = None
