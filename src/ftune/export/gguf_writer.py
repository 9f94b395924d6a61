"""Write a merged Llama model to one GGUF file that llama.cpp runs: weights (q/k permuted),
hyper-parameters, tokenizer and pre-tokenizer, chat template and end-of-turn token."""

from __future__ import annotations

from pathlib import Path

from ftune.errors import FtuneError
from ftune.export.gguf_layout import gguf_name, permute_rows, quantize, rotary_heads


def llama_hyperparameters(config) -> dict[str, float | int]:
    heads = config.num_attention_heads
    rope = getattr(config, "rope_parameters", None) or {}
    theta = rope.get("rope_theta") or getattr(config, "rope_theta", None) or 10000.0
    kind = rope.get("rope_type", "default")
    if kind not in ("default", None):
        raise FtuneError(f"rope_type {kind!r}: GGUF export writes plain rotary embeddings only")
    head_dim = getattr(config, "head_dim", None) or config.hidden_size // heads
    return {"context_length": config.max_position_embeddings, "embedding_length": config.hidden_size,
            "block_count": config.num_hidden_layers, "feed_forward_length": config.intermediate_size,
            "head_count": heads, "head_count_kv": config.num_key_value_heads or heads,
            "layer_norm_rms_eps": config.rms_norm_eps, "rope_freq_base": float(theta),
            "rope_dimension_count": head_dim, "vocab_size": config.vocab_size}


def write_llama_gguf(model, tokenizer, path: Path, *, quant: str, source_gguf: Path | None, name: str,
                     chat_template: str | None, eos_id: int) -> int:
    """Write ``path``; returns the number of tensors written."""
    import gguf

    hp = llama_hyperparameters(model.config)
    writer = gguf.GGUFWriter(str(path), "llama")
    writer.add_name(name)
    writer.add_context_length(hp["context_length"])
    writer.add_embedding_length(hp["embedding_length"])
    writer.add_block_count(hp["block_count"])
    writer.add_feed_forward_length(hp["feed_forward_length"])
    writer.add_head_count(hp["head_count"])
    writer.add_head_count_kv(hp["head_count_kv"])
    writer.add_layer_norm_rms_eps(hp["layer_norm_rms_eps"])
    writer.add_rope_freq_base(hp["rope_freq_base"])
    writer.add_rope_dimension_count(hp["rope_dimension_count"])
    writer.add_vocab_size(hp["vocab_size"])
    writer.add_file_type(gguf.LlamaFileType.MOSTLY_Q8_0 if quant == "q8_0" else gguf.LlamaFileType.MOSTLY_F16)
    if source_gguf is not None:
        copy_tokenizer_metadata(writer, source_gguf)
    else:
        write_bpe_tokenizer(writer, tokenizer)
    writer.add_eos_token_id(eos_id)  # the end-of-turn token: generation stops on it
    if chat_template:
        writer.add_chat_template(chat_template)
    count = 0
    tied = getattr(model.config, "tie_word_embeddings", False)
    for hf_name, tensor in model.state_dict().items():
        target = gguf_name(hf_name)
        if target is None or (tied and target == "output.weight"):
            continue
        array = tensor.detach().float().cpu().numpy()
        heads = rotary_heads(target, hp["head_count"], hp["head_count_kv"])
        if heads:
            array = permute_rows(array, heads)
        data, raw_type = quantize(target, array, quant)
        writer.add_tensor(target, data, raw_dtype=raw_type)
        count += 1
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return count


def copy_tokenizer_metadata(writer, source: Path) -> None:
    """The tokenizer, pre-tokenizer and special tokens of the GGUF the base model came from."""
    from gguf import GGUFReader

    for key, field in GGUFReader(source).fields.items():
        if not key.startswith("tokenizer.") or key in ("tokenizer.chat_template", "tokenizer.ggml.eos_token_id"):
            continue
        value_type = field.types[0]
        sub_type = field.types[-1] if len(field.types) > 1 else None
        writer.add_key_value(key, field.contents(), value_type, sub_type)


def write_bpe_tokenizer(writer, tokenizer) -> None:
    """A byte-level BPE tokenizer (tokenizer.json ``model.type == "BPE"``) as llama.cpp's "gpt2"
    tokenizer: tokens in id order, their types, and the merges."""
    import json

    import gguf

    spec = json.loads(tokenizer.backend_tokenizer.to_str())
    if spec["model"]["type"] != "BPE":
        raise FtuneError(f"tokenizer model {spec['model']['type']!r}: GGUF export writes byte-level BPE "
                         "tokenizers (or copies the tokenizer of a GGUF base model)")
    vocab = tokenizer.get_vocab()
    tokens = [""] * len(vocab)
    for token, index in vocab.items():
        tokens[index] = token
    special = set(tokenizer.all_special_ids)
    added = {t["id"] for t in spec.get("added_tokens", [])}
    types = [gguf.TokenType.CONTROL if i in special else gguf.TokenType.USER_DEFINED if i in added
             else gguf.TokenType.NORMAL for i in range(len(tokens))]
    merges = [m if isinstance(m, str) else " ".join(m) for m in spec["model"].get("merges", [])]
    writer.add_tokenizer_model("gpt2")
    writer.add_tokenizer_pre("default")
    writer.add_token_list(tokens)
    writer.add_token_types([int(t) for t in types])
    writer.add_token_merges(merges)
    if tokenizer.bos_token_id is not None:
        writer.add_bos_token_id(tokenizer.bos_token_id)
    if tokenizer.unk_token_id is not None:
        writer.add_unk_token_id(tokenizer.unk_token_id)
    if tokenizer.pad_token_id is not None:
        writer.add_pad_token_id(tokenizer.pad_token_id)
    writer.add_add_bos_token(False)
