"""transformers' Trainer (or a subclass such as TRL's DPOTrainer) with ftune's learning-rate
schedule and memory-planned micro-batches; SFT adds a loss that never builds full logits."""

from __future__ import annotations

from torch.optim.lr_scheduler import LambdaLR
from transformers import Trainer
from transformers.trainer_pt_utils import LengthGroupedSampler

from ftune.training.adapter_inputs import adapter_inputs_uncast
from ftune.training.frozen_weights import autocast_dtype, frozen_weights_in
from ftune.training.kernels import training_kernels
from ftune.training.micro_batch import split_batch
from ftune.training.schedule import ProgressSchedule


class ScheduleMixin:
    """Makes the learning rate follow a ``ProgressSchedule`` (steps or time, whichever is
    further along), so a time budget gets a full warmup and decay."""

    def __init__(self, *args, schedule: ProgressSchedule, **kwargs):
        self.progress_schedule = schedule
        super().__init__(*args, **kwargs)

    def create_scheduler(self, num_training_steps, optimizer=None):
        if self.lr_scheduler is None:
            self.lr_scheduler = LambdaLR(optimizer or self.optimizer, self.progress_schedule.multiplier)
            self._created_lr_scheduler = True
        return self.lr_scheduler


class MixedPrecisionMixin:
    """Under mixed precision, PEFT adapters take their inputs in the autocast dtype instead of
    a copy cast up to their fp32 weights (``ftune.training.adapter_inputs``), and the frozen
    base weights the matmuls read are stored in that dtype while training runs
    (``ftune.training.frozen_weights``)."""

    def train(self, *args, **kwargs):
        with frozen_weights_in(self.model, autocast_dtype(self.args), self.args.world_size), \
                adapter_inputs_uncast(self.model, self.args.bf16 or self.args.fp16):
            return super().train(*args, **kwargs)


class TrainingKernelsMixin:
    """Training runs ftune's own kernels (``ftune.training.kernels``): short rows' attention with
    plain matmuls on a CPU, plain LoRA layers as one autograd step each, cheaper dropout masks
    on a CPU."""

    def train(self, *args, **kwargs):
        with training_kernels(self.model):
            return super().train(*args, **kwargs)


class ResumableMixin:
    """What makes a resumed run the same as an uninterrupted one: checkpoints in the run
    directory, written atomically (``ftune.training.checkpoints``; none before the run
    directory exists, ``checkpoint_run`` unset), and a data order that depends only on the seed
    and the epoch, so a run resumed mid-epoch sees the batches it would have seen."""

    checkpoint_run = None  # Path of the run directory
    keep_checkpoints: int = 2
    _staging_output: str | None = None
    _sharded_batches = None  # ShardedLengthBatches, over several processes

    def _save_checkpoint(self, model, trial):
        if self.checkpoint_run is None:
            return
        from ftune.training.checkpoints import write_atomically

        parent_save = super()._save_checkpoint

        def save(staging: str) -> None:
            self._staging_output = staging
            try:
                parent_save(model, trial)
            finally:
                self._staging_output = None

        write_atomically(self, save, self.checkpoint_run, self.keep_checkpoints)

    def _get_output_dir(self, trial):
        return self._staging_output or super()._get_output_dir(trial)

    def _run_epoch(self, *args, epoch, **kwargs):
        # A resumed epoch's loader is accelerate's skip_first_batches wrapper, whose set_epoch stops
        # short of a batch sampler two wrappers down: this process's batches would be epoch 0's.
        if self._sharded_batches is not None:
            self._sharded_batches.set_epoch(epoch)
        return super()._run_epoch(*args, epoch=epoch, **kwargs)

    def _get_train_sampler(self, train_dataset=None):
        if self.args.world_size > 1:
            from ftune.training.distributed import current_world
            from ftune.training.sampling import ShardedLengthBatches

            self._sharded_batches = ShardedLengthBatches(
                train_dataset if train_dataset is not None else self.train_dataset,
                self.args.per_device_train_batch_size, self.args.gradient_accumulation_steps, current_world(),
                self.args.data_seed or self.args.seed)
            return self._sharded_batches
        sampler = super()._get_train_sampler(train_dataset)
        if isinstance(sampler, LengthGroupedSampler):
            from ftune.training.sampling import EpochSeededLengthGroupedSampler

            sampler.__class__ = EpochSeededLengthGroupedSampler
            sampler.seed, sampler.epoch = self.args.data_seed or self.args.seed, 0
        return sampler


class MicroBatchMixin:
    """Runs a batch above ``micro_batch_tokens`` padded tokens as several forward/backward
    passes whose gradients sum to the whole batch's.

    A loss normalised by ``num_items_in_batch`` (SFT: trained tokens over the accumulation
    window) is already right for every piece. A per-batch mean (classification, DPO) is
    weighted by the piece's share of the batch's rows or pairs.
    """

    micro_batch_tokens: int | None = None
    pair_rows: bool = False  # DPO batches: chosen rows, then rejected rows
    # True when compute_loss divides by num_items_in_batch (ResponseLossTrainer); otherwise the
    # loss is a mean over the batch, and transformers must divide it by the accumulation steps
    # (it would not for models whose forward takes **kwargs, such as BERT's classifier).
    loss_normalised_by_items: bool = False
    loss_is_scaled_for_ga = False
    _piece_weight: float = 1.0

    def training_step(self, model, inputs, num_items_in_batch=None):
        pieces = split_batch(inputs, self.micro_batch_tokens, self.pair_rows)
        if len(pieces) == 1:
            return super().training_step(model, inputs, num_items_in_batch)
        total = None
        try:
            for piece, share in pieces:
                self._piece_weight = share
                loss = super().training_step(model, piece, num_items_in_batch)
                total = loss if total is None else total + loss
        finally:
            self._piece_weight = 1.0
        return total

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        result = super().compute_loss(model, inputs, return_outputs=return_outputs,
                                      num_items_in_batch=num_items_in_batch)
        if self._piece_weight == 1.0 or self.loss_normalised_by_items:
            return result
        if return_outputs:
            loss, outputs = result
            return loss * self._piece_weight, outputs
        return result * self._piece_weight


def across_processes(trainer: Trainer, loss, num_items_in_batch):
    """A training loss divided by the whole step's count of trained rows or tokens over all
    processes (``num_items_in_batch``, gathered by the Trainer): DDP averages the processes'
    gradients, so each contributes its sum times their number (transformers' own compute_loss
    does the same; ours replace it). Evaluation passes no count: its loss is a local mean."""
    processes = trainer.accelerator.num_processes
    if num_items_in_batch is None or processes == 1 or not trainer.args.average_tokens_across_devices:
        return loss
    return loss * processes


class SummedRowLossTrainer(Trainer):
    """Classification loss as the cross-entropy summed over the labelled rows of the
    accumulation window (over every process) divided by their number: what a per-batch mean
    gives in one process, and still exact when processes hold unequal shares of a step, or
    none (a filler row, its label masked). Used where several processes train."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.model_accepts_loss_kwargs = True  # so the Trainer counts the rows of the window
        self.loss_is_scaled_for_ga = True
        self.loss_normalised_by_items = True

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        import torch.nn.functional as F

        inputs = dict(inputs)
        labels = inputs.pop("labels")
        outputs = model(**inputs)
        count = num_items_in_batch if num_items_in_batch is not None else labels.ne(-100).sum()
        summed = F.cross_entropy(outputs.logits.float(), labels, ignore_index=-100, reduction="sum")
        loss = across_processes(self, summed / (count.clamp(min=1) if hasattr(count, "clamp") else max(int(count), 1)),
                                num_items_in_batch)
        return (loss, outputs) if return_outputs else loss


class ResponseLossTrainer(Trainer):
    """Causal-LM loss on the labelled (response) tokens, with the LM head applied only there,
    in chunks (``ftune.models.lm_head``). The loss is the summed cross-entropy over
    the trained tokens of the whole accumulation window divided by their number, so batch
    size, accumulation and micro-batches all give the same loss and gradients."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.model_accepts_loss_kwargs = True  # our compute_loss uses num_items_in_batch
        self.loss_is_scaled_for_ga = True
        self.loss_normalised_by_items = True

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        from ftune.models.lm_head import shifted_token_logps

        inputs = dict(inputs)
        labels = inputs.pop("labels")
        logps, mask = shifted_token_logps(model, inputs, labels)
        count = num_items_in_batch if num_items_in_batch is not None else mask.sum()
        loss = -logps.sum() / (count.clamp(min=1) if hasattr(count, "clamp") else max(int(count), 1))
        loss = across_processes(self, loss, num_items_in_batch)
        return (loss, {"loss": loss}) if return_outputs else loss


class SummedPairLoss:
    """Mixin for TRL's DPOTrainer: DPO's loss summed over the pairs of the accumulation window
    (over every process) and divided by their number, rather than TRL's mean over each
    micro-batch: what one batch holding the whole window gives, still exact when micro-batches
    or processes hold unequal shares of a step, or a process holds only a filler pair (no
    completion: ``ftune.training.sampling.WithFillers``), which counts for nothing."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.loss_is_scaled_for_ga = True  # instance attributes: MicroBatchMixin's class ones come first
        self.loss_normalised_by_items = True

    def _get_num_items_in_batch(self, batch_samples, device):
        import torch

        count = torch.tensor(sum(trained_pairs(batch) for batch in batch_samples), device=device)
        if self.args.world_size > 1 and self.args.average_tokens_across_devices:
            count = self.accelerator.gather(count).sum()
        return count

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        result = super().compute_loss(model, inputs, return_outputs=return_outputs,
                                      num_items_in_batch=num_items_in_batch)
        if num_items_in_batch is None:  # outside training (the memory check): TRL's mean over the batch
            return result
        loss, outputs = result if return_outputs else (result, None)
        # TRL's mean times the batch's pairs is their sum: a filler pair comes alone, as a batch of its own
        loss = across_processes(self, loss * trained_pairs(inputs) / num_items_in_batch.clamp(min=1),
                                num_items_in_batch)
        return (loss, outputs) if return_outputs else loss


def trained_pairs(batch) -> int:
    """Pairs of a preference batch (chosen rows, then rejected rows) that have a completion."""
    chosen = batch["completion_mask"].chunk(2, dim=0)[0]
    return int(chosen.any(dim=1).sum())


def with_summed_pair_loss(dpo_trainer_class: type) -> type:
    return type(f"SummedPair{dpo_trainer_class.__name__}", (SummedPairLoss, dpo_trainer_class), {})


def with_schedule(trainer_class: type = Trainer) -> type:
    """``trainer_class`` (the Trainer, ResponseLossTrainer, TRL's DPOTrainer, ...) with ftune's
    schedule, memory-planned micro-batches, atomic checkpoints, short rows' attention in plain
    matmuls on a CPU, LoRA layers fused into one autograd step, and under mixed precision uncast
    adapter inputs and frozen weights stored in the autocast dtype."""
    return type(f"Scheduled{trainer_class.__name__}",
                (MixedPrecisionMixin, TrainingKernelsMixin, ResumableMixin, MicroBatchMixin, ScheduleMixin, trainer_class),
                {})


ScheduledTrainer = with_schedule(Trainer)
