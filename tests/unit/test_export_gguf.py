"""GGUF export on a tiny random Llama with a byte-level BPE tokenizer and a ChatML template:
the file loads back through transformers (``gguf_file=``) and through llama.cpp, and both
give the merged model's logits; the q/k permutation is what makes llama.cpp agree."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from tests.conftest import FIXTURES, only_run_dir, run_ftune

pytest.importorskip("llama_cpp", reason="llama-cpp-python is not installed (setup.sh installs it: .[export])")

CHATML = ("{% for message in messages %}{{ '<|im_start|>' + message['role'] + '\\n' + message['content'] + "
          "'<|im_end|>' + '\\n' }}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}")


@pytest.fixture(scope="module")
def bpe_llama_dir(tmp_path_factory) -> Path:
    """A 2-layer random Llama (4 heads, 2 key-value heads) with a byte-level BPE tokenizer
    trained on the fixture texts, ChatML markers as special tokens."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    directory = tmp_path_factory.mktemp("bpe-llama")
    specials = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
    backend = Tokenizer(models.BPE())
    backend.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    backend.decoder = decoders.ByteLevel()
    texts = [line for path in (FIXTURES / "gen").glob("*.jsonl") for line in path.read_text().splitlines()]
    # only the characters of the (ASCII) texts: every token decodes to whole characters
    backend.train_from_iterator(texts, trainers.BpeTrainer(vocab_size=400, special_tokens=specials))
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=backend, bos_token="<|im_start|>", eos_token="<|im_end|>",
                                        unk_token="<|endoftext|>", pad_token="<|endoftext|>")
    tokenizer.chat_template = CHATML
    tokenizer.save_pretrained(directory)
    config = LlamaConfig(vocab_size=len(tokenizer), hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=256,
                         bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
                         tie_word_embeddings=True, rms_norm_eps=1e-5,
                         initializer_range=0.25)  # large enough that attention shapes the logits
    torch.manual_seed(0)
    LlamaForCausalLM(config).save_pretrained(directory)
    return directory


@pytest.fixture(scope="module")
def lora_sft_run(tmp_path_factory, bpe_llama_dir) -> Path:
    cwd = tmp_path_factory.mktemp("gguf-run")
    result = run_ftune("train", f"model={bpe_llama_dir}", f"data.train={FIXTURES / 'gen' / 'alpaca.jsonl'}",
                       "method=lora", "method.target_modules=all-linear", "train.max_steps=6", "train.batch_size=4",
                       "model.max_length=96", "generate.samples=0", "train.learning_rate=0.05", cwd=cwd)
    assert result.returncode == 0, result.stderr[-3000:]
    return only_run_dir(cwd)


def _merged_logits(run: Path, ids: list[int]) -> np.ndarray:
    from ftune.export.finished_run import FinishedRun
    from ftune.export.merging import merged_model

    with torch.no_grad():
        return merged_model(FinishedRun.open(run)).forward(torch.tensor([ids])).logits[0].numpy()


def _relative_error(got: np.ndarray, expected: np.ndarray) -> float:
    return float(np.abs(got - expected).max() / np.abs(expected).max())


def _ids(run: Path) -> list[int]:
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(run / "model")
    return tokenizer.apply_chat_template([{"role": "user", "content": "Give three tips for staying healthy."}],
                                         add_generation_prompt=True, tokenize=True, return_dict=False)


def _export(run: Path, out: Path, **options):
    from ftune.export.run_export import export_run
    from ftune.export.target import ExportOptions

    return export_run(run, "gguf", out, ExportOptions(**options), check=False, echo=lambda *_: None)


def test_the_lora_moved_the_model(lora_sft_run):
    from ftune.export.finished_run import FinishedRun

    run = FinishedRun.open(lora_sft_run)
    model = run.load_model()
    ids = _ids(lora_sft_run)
    with torch.no_grad(), run.method.disabled(model):
        base = model(torch.tensor([ids])).logits[0].numpy()
    assert np.abs(_merged_logits(lora_sft_run, ids) - base).max() > 1e-3  # else a lost merge would pass


def test_gguf_reads_back_in_transformers_and_llama_cpp_with_the_merged_logits(lora_sft_run, tmp_path):
    from transformers import AutoModelForCausalLM

    from ftune.export.llama_cpp_runtime import LlamaCppLanguageModel

    result = _export(lora_sft_run, tmp_path / "f16", quant="f16")
    path = result.directory / "model.gguf"
    ids = _ids(lora_sft_run)
    expected = _merged_logits(lora_sft_run, ids)
    through_transformers = AutoModelForCausalLM.from_pretrained(result.directory, gguf_file="model.gguf").eval()
    with torch.no_grad():
        got = through_transformers(torch.tensor([ids])).logits[0].numpy()
    assert _relative_error(got, expected) < 1e-2  # F16 weights
    llama = LlamaCppLanguageModel(path, n_ctx=128, threads=1)
    assert _relative_error(llama.logits(ids), expected) < 1e-2
    # the tokenizer, special tokens and chat template travel with the file
    text = "<|im_start|>user\nGive three tips for staying healthy.<|im_end|>\n<|im_start|>assistant\n"
    assert llama.tokenize(text) == ids
    metadata = llama.llm.metadata
    assert metadata["tokenizer.chat_template"].startswith("{% for message in messages %}")
    assert int(metadata["tokenizer.ggml.eos_token_id"]) == 2  # <|im_end|>, the end of a turn


def test_without_the_qk_permutation_llama_cpp_disagrees(lora_sft_run, tmp_path, monkeypatch):
    from ftune.export import gguf_writer
    from ftune.export.llama_cpp_runtime import LlamaCppLanguageModel

    monkeypatch.setattr(gguf_writer, "permute_rows", lambda rows, heads: rows)
    result = _export(lora_sft_run, tmp_path / "unpermuted", quant="f16")
    ids = _ids(lora_sft_run)
    llama = LlamaCppLanguageModel(result.directory / "model.gguf", n_ctx=128, threads=1)
    assert _relative_error(llama.logits(ids), _merged_logits(lora_sft_run, ids)) > 0.1


def test_q8_0_is_smaller_and_close(lora_sft_run, tmp_path):
    from ftune.export.llama_cpp_runtime import LlamaCppLanguageModel

    f16 = _export(lora_sft_run, tmp_path / "f16", quant="f16").directory / "model.gguf"
    q8 = _export(lora_sft_run, tmp_path / "q8", quant="q8_0").directory / "model.gguf"
    assert q8.stat().st_size < f16.stat().st_size
    ids = _ids(lora_sft_run)
    logits = LlamaCppLanguageModel(q8, n_ctx=128, threads=1).logits(ids)
    assert _relative_error(logits, _merged_logits(lora_sft_run, ids)) < 0.15  # 8-bit blocks of 32 on random weights; the real-model figure is perplexity


def test_the_full_export_checks_itself_in_llama_cpp(lora_sft_run, tmp_path):
    from ftune.export.run_export import export_run
    from ftune.export.target import ExportOptions

    result = export_run(lora_sft_run, "gguf", tmp_path / "checked", ExportOptions(quant="f16"), examples=8,
                        echo=lambda *_: None)
    check = json.loads((result.directory / "export.json").read_text())["check"]
    assert check["reference"]["runtime"].startswith("PyTorch") and check["artifact"]["runtime"] == "llama.cpp"
    assert abs(check["artifact"]["perplexity"] / check["reference"]["perplexity"] - 1) < 0.02
    assert result.passed and check["verdict"]["passed"]


@pytest.fixture(scope="module")
def rslora_sft_run(tmp_path_factory, bpe_llama_dir) -> Path:
    cwd = tmp_path_factory.mktemp("gguf-rslora")
    result = run_ftune("train", f"model={bpe_llama_dir}", f"data.train={FIXTURES / 'gen' / 'alpaca.jsonl'}",
                       "method=rslora", "method.r=4", "method.alpha=8", "method.target_modules=all-linear",
                       "train.max_steps=6", "train.batch_size=4", "model.max_length=96", "generate.samples=0",
                       "train.learning_rate=0.05", cwd=cwd)
    assert result.returncode == 0, result.stderr[-3000:]
    return only_run_dir(cwd)


def _run_logits(run: Path, ids: list[int]) -> np.ndarray:
    from ftune.export.finished_run import FinishedRun

    with torch.no_grad():
        return FinishedRun.open(run).load_model()(torch.tensor([ids])).logits[0].numpy()


@pytest.mark.parametrize("run_fixture", ["lora_sft_run", "rslora_sft_run"])
def test_gguf_lora_on_the_base_gguf_gives_the_runs_logits(run_fixture, request, tmp_path):
    from ftune.export.llama_cpp_runtime import LlamaCppLanguageModel
    from ftune.export.run_export import export_run
    from ftune.export.target import ExportOptions

    run = request.getfixturevalue(run_fixture)
    result = export_run(run, "gguf-lora", tmp_path / "lora", ExportOptions(), check=False, echo=lambda *_: None)
    adapter, base = result.directory / "adapter.gguf", result.directory / "base.gguf"
    ids = _ids(run)
    expected = _run_logits(run, ids)
    with_adapter = LlamaCppLanguageModel(base, lora_path=adapter, n_ctx=128, threads=1).logits(ids)
    without = LlamaCppLanguageModel(base, n_ctx=128, threads=1).logits(ids)
    assert _relative_error(with_adapter, expected) < 1e-2
    assert _relative_error(without, expected) > 3e-2  # the adapter matters: a lost one would show


def test_rslora_scale_must_be_folded(rslora_sft_run, tmp_path, monkeypatch):
    """Written with plain LoRA's alpha / r (as llama.cpp's own converter does), an rsLoRA adapter
    is applied at the wrong strength."""
    from ftune.export import gguf_lora_writer
    from ftune.export.llama_cpp_runtime import LlamaCppLanguageModel
    from ftune.export.run_export import export_run
    from ftune.export.target import ExportOptions

    unfolded = gguf_lora_writer.lora_pairs

    def plain_lora_scale(model):
        return [(name, a, b, 8 / a.shape[0]) for name, a, b, _ in unfolded(model)]  # alpha / r, not / sqrt(r)

    monkeypatch.setattr(gguf_lora_writer, "lora_pairs", plain_lora_scale)
    result = export_run(rslora_sft_run, "gguf-lora", tmp_path / "lora", ExportOptions(), check=False,
                        echo=lambda *_: None)
    ids = _ids(rslora_sft_run)
    got = LlamaCppLanguageModel(result.directory / "base.gguf", lora_path=result.directory / "adapter.gguf",
                                n_ctx=128, threads=1).logits(ids)
    assert _relative_error(got, _run_logits(rslora_sft_run, ids)) > 1e-2


def test_readme_snippets_for_gguf_and_gguf_lora_reply_as_ftune_s_llama_cpp_check(rslora_sft_run, tmp_path):
    """The snippets chat through llama-cpp-python's own chat handling (the GGUF's template);
    the reply equals the greedy reply of ftune's check on ftune's rendering of the prompt."""
    from transformers import AutoTokenizer

    from ftune.export.llama_cpp_runtime import LlamaCppLanguageModel
    from ftune.export.run_export import export_run
    from ftune.export.target import ExportOptions

    from tests.conftest import readme_snippet, run_snippet

    quiet = {"check": False, "echo": lambda *_: None}
    gguf = export_run(rslora_sft_run, "gguf", tmp_path / "gguf", ExportOptions(), **quiet).directory
    lora = export_run(rslora_sft_run, "gguf-lora", tmp_path / "lora", ExportOptions(), **quiet).directory
    tokenizer = AutoTokenizer.from_pretrained(rslora_sft_run / "model")
    ids = _ids(rslora_sft_run)
    expected = tokenizer.decode(LlamaCppLanguageModel(gguf / "model.gguf", n_ctx=128, threads=1)
                                .greedy_reply(ids, 16, [tokenizer.convert_tokens_to_ids("<|im_end|>")]))
    assert expected.strip(), "the tiny model replies with text, so a wrong reply would show"
    assert run_snippet(readme_snippet("gguf", EXPORT_DIR=str(gguf))) == expected.strip()
    got_lora = run_snippet(readme_snippet("gguf-lora", EXPORT_DIR=str(lora), BASE_GGUF=str(lora / "base.gguf")))
    assert got_lora == expected.strip()


def test_merged_generative_export_carries_template_and_end_of_turn(lora_sft_run, tmp_path):
    """--to merged of an SFT run: plain transformers generates with the run's chat template and
    stops at the end of a turn; the re-check agrees with the run."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from ftune.export.run_export import export_run
    from ftune.export.target import ExportOptions

    result = export_run(lora_sft_run, "merged", tmp_path / "merged", ExportOptions(), examples=6,
                        echo=lambda *_: None)
    check = result.report["check"]
    assert check["artifact"]["identical_replies"] == check["artifact"]["replies"]
    assert abs(check["artifact"]["perplexity"] / check["reference"]["perplexity"] - 1) < 1e-3
    tokenizer = AutoTokenizer.from_pretrained(result.directory)
    model = AutoModelForCausalLM.from_pretrained(result.directory)
    assert tokenizer.chat_template == CHATML
    assert tokenizer.convert_tokens_to_ids("<|im_end|>") in model.generation_config.eos_token_id
    ids = _ids(lora_sft_run)
    with torch.no_grad():
        logits = model(torch.tensor([ids])).logits[0].numpy()
    assert _relative_error(logits, _merged_logits(lora_sft_run, ids)) < 1e-5
