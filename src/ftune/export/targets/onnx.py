"""``--to onnx``: the merged classifier as one ONNX graph (token ids in, logits out, any batch
size and sequence length) that ONNX Runtime scores with the tokenizer saved beside it."""

from __future__ import annotations

import json
import logging
import tempfile
import warnings
from pathlib import Path

from ftune.export.finished_run import FinishedRun
from ftune.export.onnx_runtime import LABELS_FILE
from ftune.export.target import Artifact, ExportOptions, ExportTarget, register_target

MODEL_FILE = "model.onnx"
INT8_FILE = "model.int8.onnx"
MODEL_INPUTS = ("input_ids", "attention_mask", "token_type_ids")  # those the tokenizer produces, in this order
# torch.export fixes an axis whose example size is 0 or 1 to that size: trace with 2 texts of 8 tokens
EXAMPLE_BATCH, EXAMPLE_LENGTH = 2, 8
# protobuf caps one file at 2 GB: heavier weights go to a side file, MODEL_FILE + ".data"
EXTERNAL_DATA_BYTES = 1_800_000_000


@register_target("onnx")
class OnnxTarget(ExportTarget):
    """The merged fp32 classifier (adapters folded in, QLoRA dequantized) traced with
    ``torch.onnx.export(dynamo=True)``; inputs ``input_ids``, ``attention_mask`` (and
    ``token_type_ids`` when the tokenizer makes them), int64, shape (batch, sequence); output
    ``logits`` (batch, labels): apply a softmax for probabilities.
    Files: ``model.onnx``, with ``--int8`` also ``model.int8.onnx`` (ONNX Runtime dynamic
    quantization: int8 weights); past 1.8 GB of weights each keeps them in a ``.data`` file beside it
    (``model.onnx.data``), as one file cannot exceed protobuf's 2 GB;
    ``labels.json`` ({"labels", "max_length", "inputs", "model_file"}: the label of each logit,
    the truncation length, the input names, the file the check scored) and the tokenizer."""

    description = "ONNX graph of the merged classifier for ONNX Runtime (--int8: int8 weights)"
    file_names = "model.onnx (+ model.int8.onnx with --int8), labels.json, tokenizer files"
    tasks = ("classification",)

    def problem(self, run: FinishedRun, options: ExportOptions) -> str | None:
        from ftune.export.merging import can_merge

        problem = super().problem(run, options)
        if problem:
            return problem
        if options.dtype != "fp32":
            return f"--dtype {options.dtype} applies to --to merged; ONNX export is fp32 (--int8 adds int8 weights)"
        if not can_merge(run.method):
            return (f"technique {run.method_name!r} adds weights that do not fold into the base model's, "
                    "and ONNX export traces one merged model")
        return None

    def write(self, run: FinishedRun, out: Path, options: ExportOptions, echo=print) -> Artifact:
        from ftune.export.merging import merged_model

        model = merged_model(run, "fp32")
        tokenizer = run.tokenizer()
        external = sum(p.numel() * p.element_size() for p in model.parameters()) > EXTERNAL_DATA_BYTES
        echo(f"ftune export: tracing the merged classifier to {MODEL_FILE} ...")
        inputs = export_classifier(model, tokenizer, out / MODEL_FILE, run.max_length, external_data=external)
        model_file = MODEL_FILE
        if options.int8:
            echo(f"ftune export: quantizing to {INT8_FILE} (dynamic int8) ...")
            quantize_int8(out / MODEL_FILE, out / INT8_FILE, external_data=external)
            model_file = INT8_FILE
        tokenizer.save_pretrained(out)
        described = {"labels": list(run.info["labels"]), "max_length": run.max_length, "inputs": inputs,
                     "model_file": model_file}
        (out / LABELS_FILE).write_text(json.dumps(described, indent=2) + "\n")
        files = sorted(p.name for p in out.iterdir() if p.is_file())
        details = {"model_file": model_file, "inputs": inputs, "opset": opset_of(out / MODEL_FILE),
                   "int8": options.int8, "external_data": external, "merged_from": run.method_name}
        return Artifact(out, files, "onnxruntime int8" if options.int8 else "onnxruntime", details,
                        model_files=[model_file] + [name for name in files if name.startswith(f"{model_file}.data")])

    def runtime(self, artifact: Artifact, run: FinishedRun):
        from ftune.export.onnx_runtime import OnnxClassifier

        return OnnxClassifier.from_directory(artifact.directory, artifact.details.get("model_file", MODEL_FILE))


def export_classifier(model, tokenizer, path: Path, max_length: int, *, external_data: bool = False) -> list[str]:
    """Write ``model`` (a transformers sequence classifier in eval mode) as an ONNX graph with
    dynamic batch and sequence axes. Returns the graph's input names."""
    import torch

    length = max(2, min(EXAMPLE_LENGTH, max_length))
    texts = ["a short text", "a longer example text to trace the classifier with"][:EXAMPLE_BATCH]
    example = tokenizer(texts, truncation=True, max_length=length, padding="max_length", return_tensors="pt")
    inputs = [name for name in MODEL_INPUTS if name in example]
    batch, sequence = torch.export.Dim("batch"), torch.export.Dim("sequence")
    wrapper = logits_only(model).eval()
    registration_log = logging.getLogger("torch.onnx._internal.exporter._registration")
    level = registration_log.level
    registration_log.setLevel(logging.ERROR)  # else one "torchvision is not installed" line per vision op
    try:
        with warnings.catch_warnings():
            # every input shares the two axes; the exporter notes that it names each axis once
            warnings.filterwarnings("ignore", message=".*The axis name", category=UserWarning)
            torch.onnx.export(wrapper, (), str(path), kwargs={name: example[name] for name in inputs},
                              dynamic_shapes={name: {0: batch, 1: sequence} for name in inputs},
                              output_names=["logits"], dynamo=True, external_data=external_data, verbose=False)
    finally:
        registration_log.setLevel(level)
    return inputs


def quantize_int8(source: Path, destination: Path, *, external_data: bool = False) -> None:
    """ONNX Runtime's dynamic quantization: int8 weights (a scale per output channel), activations
    quantized per batch at run time."""
    from onnxruntime.quantization import QuantType, quantize_dynamic
    from onnxruntime.quantization.shape_inference import quant_pre_process

    # beside the output (a temporary directory there), not in /tmp: the prepared copy is as large as the model
    with tempfile.TemporaryDirectory(prefix=".int8-", dir=destination.parent) as scratch:
        prepared = Path(scratch) / "prepared.onnx"
        # the pre-processing ONNX Runtime asks for (shape inference, graph clean-up); its symbolic
        # shape inference stops at the exporter's dynamic axes ("Incomplete symbolic shape inference")
        quant_pre_process(source, prepared, skip_symbolic_shape=True, save_as_external_data=external_data,
                          all_tensors_to_one_file=True, external_data_location="prepared.onnx.data")
        # one scale per output channel: per-tensor scales cost MiniLM on SST-2 2.1 accuracy points,
        # per-channel 0.25 (same run, same 813 sentences), at about the same size and speed
        quantize_dynamic(prepared, destination, weight_type=QuantType.QInt8, per_channel=True,
                         use_external_data_format=external_data)


def opset_of(path: Path) -> int | None:
    import onnx

    model = onnx.load(str(path), load_external_data=False)
    return next((entry.version for entry in model.opset_import if entry.domain in ("", "ai.onnx")), None)


def logits_only(model):
    """``model`` (a transformers classifier) returning only its logits: one plain graph output."""
    import torch

    class LogitsOnly(torch.nn.Module):
        def __init__(self, model):
            super().__init__()
            self.model = model

        def forward(self, input_ids, attention_mask, token_type_ids=None):
            extra = {} if token_type_ids is None else {"token_type_ids": token_type_ids}
            return self.model(input_ids=input_ids, attention_mask=attention_mask, **extra).logits

    return LogitsOnly(model)
