"""In-process transformers (`hf:PATH_OR_ID`): an image-text-to-text model (or a plain causal LM) run locally.

Generation runs in a worker thread, one request at a time (a model on one device does not run two forward passes
in parallel any faster). Tool calls use the text protocol.
"""

from __future__ import annotations

import asyncio
import io
import threading
import time

from harness.core.failures import FailureKind
from harness.models.backends import register_backend
from harness.models.base import ChatModel
from harness.models.types import ModelError, Reply, Usage
from harness.models.wire import to_openai_messages


@register_backend
class HFLocalModel(ChatModel):
    name = "hf"
    description = "in-process transformers (a local folder or a hub id)"

    def __init__(self, spec, cache=None):
        super().__init__(spec, cache)
        self._lock = threading.Lock()
        self._loaded = None  # (processor, model, takes_images)

    @property
    def native_tools(self) -> bool:
        return False

    def _load(self):
        if self._loaded is None:
            import transformers

            kw = {"revision": self.spec.revision} if self.spec.revision else {}
            try:
                processor = transformers.AutoProcessor.from_pretrained(self.spec.model, **kw)
                model = transformers.AutoModelForImageTextToText.from_pretrained(self.spec.model, **kw)
                takes_images = True
            except (ValueError, KeyError, OSError) as first:
                try:
                    processor = transformers.AutoTokenizer.from_pretrained(self.spec.model, **kw)
                    model = transformers.AutoModelForCausalLM.from_pretrained(self.spec.model, **kw)
                    takes_images = False
                except (ValueError, KeyError, OSError) as exc:
                    raise ModelError(FailureKind.BACKEND_ERROR, f"cannot load {self.spec.model} with transformers: {first}; {exc}") from None
            if self.spec.device:
                model = model.to(self.spec.device)
            model.eval()
            self._loaded = (processor, model, takes_images)
        return self._loaded

    def _generate(self, messages, sampling) -> Reply:
        import torch
        from PIL import Image

        with self._lock:
            processor, model, takes_images = self._load()
            t0 = time.perf_counter()
            if takes_images:
                chat = to_openai_messages(messages, native_tools=False, image_part=lambda p: {"type": "image", "image": Image.open(io.BytesIO(p.png)).convert("RGB")})
            else:
                if any(m.images for m in messages):
                    raise ModelError(FailureKind.BAD_REQUEST, f"{self.spec.model} is a text-only model and cannot take images")
                chat = to_openai_messages(messages, native_tools=False)
            inputs = processor.apply_chat_template(chat, add_generation_prompt=True, tokenize=True, return_dict=True, return_tensors="pt")
            inputs = inputs.to(model.device)
            gen = {"max_new_tokens": sampling.max_tokens, "do_sample": sampling.temperature > 0}
            if sampling.temperature > 0:
                gen["temperature"] = sampling.temperature
                if sampling.top_p is not None:
                    gen["top_p"] = sampling.top_p
            if sampling.seed is not None:
                torch.manual_seed(sampling.seed)
            with torch.inference_mode():
                out = model.generate(**inputs, **gen)
            n_prompt = inputs["input_ids"].shape[1]
            new = out[0, n_prompt:]
            tokenizer = getattr(processor, "tokenizer", processor)
            text = tokenizer.decode(new, skip_special_tokens=True)
            for stop in sampling.stop:
                text = text.split(stop, 1)[0]
            eos = model.generation_config.eos_token_id
            eos_ids = set(eos if isinstance(eos, list) else [eos])
            finished = len(new) > 0 and int(new[-1]) in eos_ids
            return Reply(
                text=text,
                usage=Usage(int(n_prompt), int(len(new))),
                latency_s=time.perf_counter() - t0,
                finish_reason="stop" if finished or len(new) < sampling.max_tokens else "length",
            )

    async def _complete(self, messages, tools, sampling) -> Reply:
        try:
            return await asyncio.to_thread(self._generate, messages, sampling)
        except ModelError:
            raise
        except Exception as exc:  # an in-process backend's failure is a recorded reason, not a crash
            raise ModelError(FailureKind.BACKEND_ERROR, f"{self.spec.model}: {type(exc).__name__}: {str(exc)[:300]}") from exc
