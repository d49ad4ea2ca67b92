"""attamba: Python bindings for libattamba, the portable OpenCL engine for Attamba language models.

A thin ctypes layer over the C API (include/attamba/attamba.h, API 0.3) with numpy arrays in and
out: float32 logits, int32 token ids.

    import attamba
    with attamba.Context() as ctx:
        model = attamba.Model.init(ctx, "tiny", seed=1)       # or attamba.Model.load(ctx, "model_dir")
        ids = model.tokenizer.encode("Hello")
        logits = model.forward(ids)                           # [T, V] float32
        print(model.tokenizer.decode(model.generate("Hello", 20)))

The shared library is found through $ATTAMBA_LIBRARY, else ctypes.util.find_library("attamba"),
when first needed. Every failure of a C call raises attamba.Error (a RuntimeError) with the
library's status and message; see docs/python.md.
"""

from ._lib import Error, LibraryNotFoundError, Status, load_library
from ._core import (MAX_DEVICES, TOKEN_SKIP, CacheStats, Config, Context, Counters, DeviceInfo, Memory, Model, Sampler,
                    Session, Tokenizer, Trainer, TrainStats, checkpoint_exists, contexts, devices, generate_batch,
                    generate_task, have_sentencepiece, quantize, tokenize_file, train_run, train_tokenizer, version)

__version__ = "0.3.0"

__all__ = ["TOKEN_SKIP", "Error", "LibraryNotFoundError", "Status", "load_library", "version", "devices", "DeviceInfo",
           "Memory", "Counters", "Context", "Model", "Tokenizer", "Sampler", "Session", "generate_batch", "Trainer",
           "TrainStats", "MAX_DEVICES", "CacheStats", "contexts", "Config", "quantize", "have_sentencepiece",
           "train_tokenizer", "tokenize_file", "train_run", "checkpoint_exists", "generate_task"]
