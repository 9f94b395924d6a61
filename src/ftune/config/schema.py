"""The typed configuration: every setting, its default and what it means.

Sections mirror the pipeline (model -> data -> method -> train -> eval -> run). The ``help``
of each field is what ``ftune config --help-keys`` prints; keep it one line.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal


def setting(default: Any, help: str, **kwargs: Any) -> Any:
    """A config field with its one-line documentation."""
    if isinstance(default, (list, dict)):
        return field(default_factory=lambda: type(default)(default), metadata={"help": help}, **kwargs)
    return field(default=default, metadata={"help": help}, **kwargs)


@dataclass
class ModelConfig:
    name: str = setting("minilm-l6", "built-in model name (minilm-l6, smollm2-135m) or a local Hugging Face model directory")
    max_length: int | None = setting(None, "longest input in tokens, longer ones are truncated; empty = 128 for classification, 1024 for generative data")
    trust_remote_code: bool = setting(False, "allow a local model directory to run its own Python code")


@dataclass
class DataConfig:
    train: str | None = setting(None, "training file (csv, tsv, json, jsonl, optionally .gz); empty = built-in demo sentiment data")
    validation: str | None = setting(None, "validation file; empty = a stratified split of the training file")
    test: str | None = setting(None, "optional test file, evaluated once after training (classification; "
                                     "for SFT and DPO use `ftune eval RUN --data FILE`)")
    text_columns: list[str | int] | None = setting(None, "text column name(s) or 0-based position(s); several are joined; empty = auto-detect")
    label_column: str | int | None = setting(None, "label column name or 0-based position; empty = auto-detect")
    header: bool | None = setting(None, "whether delimited files have a header row; empty = auto-detect")
    delimiter: str | None = setting(None, "field delimiter; empty = by extension (, for csv, tab for tsv)")
    text_separator: str = setting("\n", "string placed between joined text columns")
    labels: list[str] | None = setting(None, "allowed labels; rows with other labels are reported and skipped")
    validation_fraction: float = setting(0.1, "share of the training file held out for validation when no validation file is given")
    max_rows: int | None = setting(None, "use a seeded stratified sample of at most this many training rows")
    split_seed: int | None = setting(None, "seed of the held-out split and of the data.max_rows sample; empty = train.seed. `ftune compare --seeds N` holds it at the first seed, so that seeds vary the training and not the data")
    format: str = setting("auto", "data format: classification, {formats}; auto = detect")
    template: str = setting("auto", "chat template for generative data: auto (the model's own, else alpaca), {templates}")
    instruction: str | None = setting(None, "labeled data trained as chat (objective=sft): the instruction before each text; empty = \"Classify the text. Answer with one of: ...\"")
    label_words: dict[str, str] | None = setting(None, "labeled data trained as chat: the reply for each label, e.g. {0: negative, 1: positive}; empty = the labels themselves")
    drop_overlap: bool = setting(True, "split: drop held-out rows whose words occur inside a training row and training rows inside a held-out row (duplicates, sub-phrases)")
    max_bad_fraction: float = setting(0.05, "stop when more than this share of a file's rows is bad")


@dataclass
class MethodConfig:
    name: str = setting("lora", "adaptation technique: {methods}")
    # Technique-specific options (e.g. method.r for LoRA) are validated against the
    # technique's own Options dataclass; see ftune.methods.
    options: dict[str, Any] = setting({}, "technique options, set as method.<option>")


@dataclass
class ObjectiveConfig:
    name: Literal["auto", "classification", "sft", "dpo"] = setting("auto", "training objective; auto = classification for labeled data, sft for instructions/chat/text, dpo for preference pairs")
    beta: float = setting(0.1, "DPO: strength of the pull towards the reference model")


@dataclass
class GenerateConfig:
    max_new_tokens: int = setting(256, "longest generated reply in tokens")
    temperature: float = setting(0.7, "sampling temperature; 0 = greedy")
    top_p: float = setting(0.9, "nucleus sampling: keep the smallest token set with this probability")
    samples: int = setting(4, "held-out prompts answered before and after training, saved in the run directory")


@dataclass
class TrainConfig:
    epochs: float | None = setting(None, "passes over the training data; empty = 3, and for classification more over small data, until train.min_steps optimizer steps")
    batch_size: int = setting(16, "examples per device step")
    eval_batch_size: int = setting(64, "examples per evaluation step")
    learning_rate: float | None = setting(None, "peak learning rate; empty = the technique's default")
    weight_decay: float = setting(0.0, "AdamW weight decay")
    warmup_ratio: float = setting(0.1, "share of training spent warming the learning rate up")
    scheduler: Literal["linear", "cosine", "constant"] = setting("linear", "learning-rate decay after warmup")
    gradient_accumulation_steps: int = setting(1, "device steps per optimizer step")
    gradient_checkpointing: bool = setting(False, "recompute activations in backward to save memory (the memory plan turns it on when a row would not fit otherwise)")
    memory_limit: str | None = setting(None, "most memory training may take, e.g. 16GB or 900MB (RAM on CPU, device memory on GPU); empty = 85% of what is free when training starts")
    batching: Literal["group_by_length", "padding_free"] = setting("group_by_length", "SFT batches: similar lengths with dynamic padding (fastest on CPU), or padding-free packing with per-sequence position ids")
    early_stopping_patience: int | None = setting(None, "stop after this many evaluations without improvement; empty = off")
    metric: Literal["accuracy", "f1"] = setting("accuracy", "validation metric for early stopping and train.keep=best")
    keep: Literal["last", "best"] = setting("last", "weights the run keeps, reports and ships: last = the final ones; best = those of the held-out evaluation with the best train.metric (the held-out figures then also chose them, so they read high, the more so with many evaluations of few rows)")
    evals_per_epoch: int = setting(1, "validation evaluations per epoch")
    max_steps: int | None = setting(None, "stop after this many optimizer steps")
    min_steps: int = setting(300, "classification with train.epochs empty: train at least this many optimizer steps, adding epochs over small data (train.max_minutes still ends training); 0 = 3 epochs")
    max_minutes: float | None = setting(None, "stop after this much training time; the schedule is fitted to it")
    seed: int = setting(42, "seed for the split, initialisation and data order")
    device: Literal["auto", "cpu", "cuda", "mps"] = setting("auto", "where to train; auto picks CUDA, then MPS, then CPU")
    precision: Literal["auto", "fp32", "bf16", "fp16"] = setting("auto", "auto = bf16 (or fp16) on CUDA; on a CPU bf16 autocast where it multiplies bf16 natively (AVX-512 BF16, AMX) and a probe at the model's shapes finds it faster, else fp32; MPS fp32. Weights and optimizer state stay fp32")
    threads: int | None = setting(None, "CPU threads for torch; empty = torch's default")
    checkpoint_every: str | bool | None = setting("5m", "save a resumable checkpoint every N optimizer steps (200) or minutes (10m); empty or off = never. `ftune train --resume RUN` continues from the last one")
    keep_checkpoints: int = setting(2, "complete checkpoints kept (older ones are deleted); a finished run deletes them all")
    report_to: list[str] = setting([], "experiment trackers that record the run: {trackers} (e.g. [tensorboard, mlflow]); empty or none = none")
    experiment: str | None = setting(None, "MLflow experiment (wandb project) the run is recorded in; empty = $MLFLOW_EXPERIMENT_NAME, else ftune")
    register_model: str | None = setting(None, "with mlflow in train.report_to: register the finished classifier in MLflow's model registry under this name")
    processes: int = setting(1, "train over this many processes on this machine (one per GPU; on a CPU, each takes its share of the cores), launched through accelerate; the global batch is train.batch_size x gradient_accumulation_steps x processes")
    distributed: Literal["ddp", "fsdp", "deepspeed-zero2", "deepspeed-zero3"] = setting("ddp", "how train.processes > 1 share the model: ddp = each holds all of it and gradients are averaged (gloo on CPU, NCCL on CUDA); on CUDA GPUs fsdp (PyTorch FSDP2: parameters, gradients and optimizer state sharded), deepspeed-zero2 (optimizer state and gradients sharded), deepspeed-zero3 (parameters too); settings in configs/distributed/")


BASELINE_KINDS = ("majority", "tfidf", "embeddings", "knn", "few_shot", "retrieval")


@dataclass
class EvalConfig:
    baselines: bool | list[str] = setting(True, "cheap alternatives every run is measured against: true = all, false = none, or a list of them. Classifiers: majority, tfidf, embeddings (logistic regression on the base model's frozen sentence vectors), knn (nearest training rows by those vectors). SFT and labeled data as chat, beside the base model zero-shot: few_shot (eval.few_shot fixed training examples before each prompt), retrieval (the eval.few_shot most similar ones, found by eval.retrieval); labeled data as chat also majority and tfidf")
    baseline_rows: int = setting(20000, "embeddings and knn baselines: at most this many training rows (a seeded stratified sample), so a large file costs minutes of embedding, not hours")
    baseline_model: Literal["logreg", "random_forest"] = setting("logreg", "bag-of-words baseline classifier on TF-IDF features")
    few_shot: int = setting(4, "SFT: solved training examples put before each held-out prompt for the base model's few-shot and retrieval-augmented baselines (fewer where they would not fit in model.max_length)")
    retrieval: str = setting("minilm-l6", "retrieval-augmented baseline: how the training examples nearest each held-out prompt are found: bm25, or a sentence encoder (built-in name or local model directory) compared by cosine similarity; its vectors are cached")

    def chosen_baselines(self) -> list[str]:
        if isinstance(self.baselines, bool):
            return list(BASELINE_KINDS) if self.baselines else []
        return [kind for kind in BASELINE_KINDS if kind in self.baselines]


@dataclass
class RunConfig:
    dir: str = setting("runs", "parent directory of run directories")
    name: str | None = setting(None, "run name; the directory is <dir>/<timestamp>-<name>")
    merge: bool = setting(False, "ship the adapter merged into the base weights (one standalone model)")


@dataclass
class Config:
    model: ModelConfig = field(default_factory=ModelConfig)
    data: DataConfig = field(default_factory=DataConfig)
    method: MethodConfig = field(default_factory=MethodConfig)
    objective: ObjectiveConfig = field(default_factory=ObjectiveConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)
    generate: GenerateConfig = field(default_factory=GenerateConfig)
    run: RunConfig = field(default_factory=RunConfig)


# ``model=smollm2-135m`` is shorthand for ``model.name=smollm2-135m``; same for method, objective.
SHORTHAND_SECTIONS = {"model": "name", "method": "name", "objective": "name"}

DEFAULT_EPOCHS = 3.0  # train.epochs when empty

DEFAULT_MAX_LENGTH = {"classification": 128, "sft": 1024, "dpo": 1024}


def epochs(train: TrainConfig) -> float:
    """train.epochs, or the default 3 when it is empty."""
    return DEFAULT_EPOCHS if train.epochs is None else train.epochs


def split_seed(config: Config) -> int:
    """The seed of the held-out split (and the data.max_rows sample): data.split_seed, else train.seed."""
    return config.train.seed if config.data.split_seed is None else config.data.split_seed
