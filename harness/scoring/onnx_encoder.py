"""BERTScore's encoder run by ONNX Runtime.

BERTScore on a CPU is compute-bound in the encoder's matrix products (75 % of the time in its Linear layers, attention
already on SDPA). ONNX Runtime fuses the encoder's layers (attention, layer norm, GELU) and runs the same float32
arithmetic about twice as fast on 2 cores; its token embeddings equal torch's to ~1e-5 (float rounding: reordered
sums), which moves a BERTScore by ~1e-7. The model bert-score loaded (already cut to its num_layers) is exported once
per process, in memory (about 1 s; nothing is written to disk), traced with eager attention on a padded example:
traced on the SDPA path (with a padded 32 x 151 batch) the graph let padding leak into the real tokens of batches of
other lengths (embeddings off by up to 2.0).
"""

from __future__ import annotations

import io
import warnings

import numpy as np
import onnxruntime as ort
import torch


class OnnxEncoder:
    def __init__(self, model, threads: int):
        previous = model.config._attn_implementation
        model.set_attn_implementation("eager")
        try:
            wrapper = _LastHiddenState(model).eval()
            ids = torch.ones((2, 8), dtype=torch.long)
            mask = torch.ones((2, 8), dtype=torch.long)
            mask[1, 5:] = 0  # traced with padding, so the mask's path is the one recorded
            buf = io.BytesIO()
            with torch.inference_mode(False), torch.no_grad(), warnings.catch_warnings():
                warnings.simplefilter("ignore")  # the tracer's notes on shapes it records; checked in tests instead
                torch.onnx.export(wrapper, (ids, mask), buf, input_names=["input_ids", "attention_mask"],
                                  output_names=["hidden"], opset_version=17, dynamo=False,
                                  dynamic_axes={name: {0: "batch", 1: "tokens"}
                                                for name in ("input_ids", "attention_mask", "hidden")})
        finally:
            model.set_attn_implementation(previous)
        options = ort.SessionOptions()
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        options.intra_op_num_threads = max(1, threads)
        options.inter_op_num_threads = 1
        # no busy-waiting between calls: a run scores a sample at a time, beside rendering and model calls
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        self._session = ort.InferenceSession(buf.getvalue(), options, providers=["CPUExecutionProvider"])

    def __call__(self, input_ids: np.ndarray, attention_mask: np.ndarray) -> np.ndarray:
        """Last hidden states [batch, tokens, dim] of padded token ids and their mask (int64)."""
        return self._session.run(None, {"input_ids": np.asarray(input_ids, np.int64),
                                        "attention_mask": np.asarray(attention_mask, np.int64)})[0]


class _LastHiddenState(torch.nn.Module):
    def __init__(self, model):
        super().__init__()
        self.model = model

    def forward(self, input_ids, attention_mask):
        return self.model(input_ids=input_ids, attention_mask=attention_mask, return_dict=True).last_hidden_state
