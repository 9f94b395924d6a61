"""Frozen base weights stored in the autocast dtype while a mixed-precision run trains.

Under bf16 autocast every linear layer casts its fp32 weight to bf16 before the matmul. For a
frozen base (LoRA, IA3, prompt tuning) that is a fresh copy of every weight in every forward,
held until the backward pass has used it, while the fp32 originals sit unused: nothing updates
them. Stored in bf16 for the run, the same matmuls get the same bf16 weights (autocast's cast
and ``Tensor.to`` both round to nearest), so every forward and backward computes the same
numbers, without the casts and with half the bytes per frozen weight. The fp32 values wait in
an unlinked temporary file (host memory for a GPU's weights, or where the temporary directory
is itself memory) and are put back when the block ends, so evaluation, merging and export see
the weights that were loaded.

Only where that holds exactly: a PEFT model (its checkpoints hold the adapters alone, never a
frozen weight), one process, and plain ``nn.Linear`` layers whose weight only their own forward
reads: not tied to another module, not the output embedding (ftune's loss head reads it), not
under a DoRA or other LoRA variant (those read the base weight to compute norms in fp32).
"""

from __future__ import annotations

import os
import shutil
import tempfile
from contextlib import contextmanager

_MEMORY_FILESYSTEMS = ("tmpfs", "ramfs")


@contextmanager
def frozen_weights_in(model, dtype, processes: int = 1):
    """While the block runs, the frozen linear weights of ``model`` that only autocast's matmuls
    read (see the module docstring) are stored in ``dtype`` (the autocast dtype; None: no
    change). Their fp32 values come back bit for bit when it ends, however it ends."""
    layers = castable_layers(model) if dtype is not None and processes == 1 else []
    if not layers:
        yield
        return
    import torch

    stash = _stash_for([layer.weight for layer in layers])
    try:
        for layer in layers:
            stash.put(layer.weight.data)
    except OSError:  # the disk filled up: nothing is cast yet
        stash.close()
        stash = _MemoryStash()
        for layer in layers:
            stash.put(layer.weight.data)
    try:
        with torch.no_grad():
            for layer in layers:
                layer.weight.data = layer.weight.data.to(dtype)
        yield
    finally:
        with torch.no_grad():
            for index, layer in enumerate(layers):
                layer.weight.data = stash.take(index).to(layer.weight.device)
        stash.close()


def autocast_dtype(args):
    """The dtype a trainer with ``TrainingArguments`` ``args`` autocasts to; None: fp32."""
    import torch

    return torch.bfloat16 if args.bf16 else torch.float16 if args.fp16 else None


def castable_layers(model) -> list:
    """The linear layers of a PEFT ``model`` whose frozen fp32 weight autocast alone reads."""
    import torch
    from torch import nn

    try:
        from peft import PeftModel
    except ImportError:
        return []
    if not isinstance(model, PeftModel):
        return []
    uses: dict[int, int] = {}
    for _, parameter in model.named_parameters(remove_duplicate=False):
        uses[id(parameter)] = uses.get(id(parameter), 0) + 1
    excluded = {id(layer) for layer in _weight_readers(model)}
    return [module for module in model.modules()
            if type(module).forward is nn.Linear.forward and id(module) not in excluded
            and type(module.weight) is nn.Parameter and module.weight.dtype == torch.float32
            and not module.weight.requires_grad and uses.get(id(module.weight)) == 1]


def _weight_readers(model) -> list:
    """Linear layers something other than their forward reads: the output embedding, and the
    base layers of LoRA layers with a variant (DoRA computes the weight's norm itself)."""
    readers = []
    output = getattr(model.get_base_model(), "get_output_embeddings", lambda: None)()
    if output is not None:
        readers.append(output)
    for module in model.modules():
        if any(getattr(module, "use_dora", {}).values()) or getattr(module, "lora_variant", None):
            readers.append(module.get_base_layer())
    return readers


def _stash_for(weights) -> "_FileStash | _MemoryStash":
    """Where fp32 weights wait: a file for a CPU's weights, when the temporary directory is on
    a disk with room to spare; host memory otherwise (a GPU's weights, a tmpfs /tmp, a full
    disk: on a CPU that keeps the speed, not the memory)."""
    size = sum(weight.numel() * weight.element_size() for weight in weights)
    on_cpu = all(weight.device.type == "cpu" for weight in weights)
    directory = tempfile.gettempdir()
    if on_cpu and not _in_memory_filesystem(directory) and shutil.disk_usage(directory).free > 2 * size + 2**30:
        try:
            return _FileStash(directory)
        except OSError:
            pass
    return _MemoryStash()


def _in_memory_filesystem(path: str) -> bool:
    """True when ``path`` lies on tmpfs or ramfs (Linux; elsewhere assumed a disk)."""
    try:
        with open("/proc/self/mounts", encoding="utf-8") as mounts:
            entries = [fields[1:3] for fields in map(str.split, mounts) if len(fields) > 2]
    except OSError:
        return False
    path = os.path.realpath(path)
    best, kind = "", ""
    for mount_point, filesystem in entries:
        inside = path == mount_point or path.startswith(mount_point.rstrip("/") + "/")
        if inside and len(mount_point) >= len(best):
            best, kind = mount_point, filesystem
    return kind in _MEMORY_FILESYSTEMS


class _FileStash:
    """Tensors written one after another to an unlinked temporary file (the operating system
    removes it even when the process is killed), and given back mapped from it copy-on-write,
    as safetensors maps a loaded model: pages come into memory when read, and leave it when
    the tensors are freed, which a read into fresh memory would not promise (the allocator
    keeps small freed blocks)."""

    def __init__(self, directory: str):
        self.file = tempfile.TemporaryFile(prefix="ftune-frozen-weights-", dir=directory)
        self.places: list[tuple[int, int, tuple, object]] = []  # offset, bytes, shape, dtype
        self.mapped = None

    def put(self, tensor) -> None:
        tensor = tensor.detach().contiguous()
        data = memoryview(tensor.numpy()).cast("B")
        self.places.append((self.file.tell(), data.nbytes, tuple(tensor.shape), tensor.dtype))
        self.file.write(data)

    def take(self, index: int):
        import numpy
        import torch

        if self.mapped is None:
            self.file.flush()
            self.mapped = numpy.memmap(self.file, dtype=numpy.uint8, mode="c")
        offset, size, shape, dtype = self.places[index]
        return torch.from_numpy(self.mapped[offset:offset + size]).view(dtype).view(shape)

    def close(self) -> None:
        self.mapped = None  # the tensors taken keep the mapping (and the file) alive
        self.file.close()


class _MemoryStash:
    def __init__(self):
        self.tensors: list = []

    def put(self, tensor) -> None:
        self.tensors.append(tensor.to("cpu"))  # the tensor itself when it is on the CPU already

    def take(self, index: int):
        return self.tensors[index]

    def close(self) -> None:
        self.tensors.clear()
