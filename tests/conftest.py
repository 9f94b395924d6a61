"""Shared fixtures: tiny random models built in code (no downloads), CLI runner, data paths."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
FIXTURES = REPO / "tests" / "fixtures"
SHARED_DATA = REPO.parent / "shared" / "data"

os.environ.setdefault("HF_HUB_OFFLINE", "1")


def _fixture_words() -> list[str]:
    words: set[str] = set()
    for path in [*FIXTURES.rglob("*.csv"), *FIXTURES.rglob("*.jsonl")]:
        words.update(re.findall(r"[a-z0-9']+|[^\sa-z0-9]", path.read_text(encoding="utf-8", errors="ignore").lower()))
    return sorted(words)


@pytest.fixture(scope="session")
def tiny_bert_dir(tmp_path_factory) -> Path:
    """A 2-layer, 32-wide random BERT encoder and a WordPiece tokenizer over the fixtures' words.

    Saved without a classification head, like a real pre-trained encoder.
    """
    from transformers import BertConfig, BertModel, BertTokenizerFast

    directory = tmp_path_factory.mktemp("tiny-bert")
    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *_fixture_words()]
    (directory / "vocab.txt").write_text("\n".join(vocab) + "\n")
    tokenizer = BertTokenizerFast(vocab_file=str(directory / "vocab.txt"), do_lower_case=True)
    tokenizer.save_pretrained(directory)
    config = BertConfig(vocab_size=len(vocab), hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                        intermediate_size=64, max_position_embeddings=128)
    import torch

    torch.manual_seed(0)
    BertModel(config, add_pooling_layer=True).save_pretrained(directory)
    return directory


@pytest.fixture(scope="session")
def tiny_llama_dir(tmp_path_factory) -> Path:
    """A 2-layer random Llama causal LM with a word-level tokenizer (no pad token, like many LLMs)."""
    import torch
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    directory = tmp_path_factory.mktemp("tiny-llama")
    specials = ["<unk>", "<s>", "</s>", "<|im_start|>", "<|im_end|>"]
    vocab = {token: i for i, token in enumerate(specials + _fixture_words())}
    backend = Tokenizer(models.WordLevel(vocab=vocab, unk_token="<unk>"))
    backend.pre_tokenizer = pre_tokenizers.Sequence([pre_tokenizers.Whitespace()])
    from tokenizers import normalizers

    backend.normalizer = normalizers.Lowercase()
    backend.add_special_tokens(specials)  # matched whole, before the pre-tokenizer splits text
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=backend, unk_token="<unk>", bos_token="<s>", eos_token="</s>")
    tokenizer.save_pretrained(directory)
    config = LlamaConfig(vocab_size=len(vocab), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=256,
                         bos_token_id=1, eos_token_id=2, tie_word_embeddings=True)
    torch.manual_seed(0)
    LlamaForCausalLM(config).save_pretrained(directory)
    return directory


def shared_file(relative: str) -> Path:
    """A file of ../shared/data, or skip the test with the reason."""
    path = SHARED_DATA / relative
    if not path.is_file():
        pytest.skip(f"{path} not found (the shared data sets live in ../shared/data)")
    return path


def run_ftune(*args: str, cwd: Path, timeout: float = 300, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    """Run the real CLI in a process of its own, as a user would (``env``: extra variables);
    forked from a server that has imported the heavy libraries once (tests/forked_cli.py)."""
    from tests.forked_cli import run_cli

    full_env = dict(os.environ, PYTHONWARNINGS="ignore", HF_HUB_OFFLINE="1", **(env or {}))
    return run_cli(list(args), cwd, full_env, env or {}, timeout)


def only_run_dir(parent: Path) -> Path:
    runs = [p for p in (parent / "runs").iterdir() if p.is_dir()]
    assert len(runs) == 1, runs
    return runs[0]


def read_json(path: Path):
    return json.loads(Path(path).read_text())


def readme_snippet(name: str, **replacements: str) -> str:
    """The README's ``<!-- snippet: NAME -->`` code block, placeholders replaced, followed by a
    check that it ran without importing ftune."""
    import re

    text = (REPO / "README.md").read_text()
    match = re.search(rf"<!-- snippet: {re.escape(name)} -->\n```python\n(.*?)```", text, re.S)
    assert match, f"README.md has no snippet {name!r}"
    code = match.group(1)
    for placeholder, value in replacements.items():
        code = code.replace(placeholder, value)
    return code + "\nimport sys\nassert 'ftune' not in sys.modules, 'the snippet imported ftune'\n"


def run_snippet(code: str, timeout: float = 180) -> str:
    """Run ``code`` in a fresh interpreter; what it printed, stripped."""
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=timeout)
    assert result.returncode == 0, result.stderr[-3000:]
    return result.stdout.strip()


def load_script(path: Path, name: str):
    """A script (``bench/*.py``) imported as a module under ``name``, to test its functions."""
    import importlib.util

    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module
