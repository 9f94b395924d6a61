"""Fine-tune a model. With no arguments: the built-in MiniLM encoder with LoRA on ftune's demo
sentiment data. The objective follows the data: labeled rows -> classification; instructions,
chats, prompt/completion pairs or plain text -> SFT (objective=sft).

examples:
  ftune train
  ftune train configs/sst2-minilm-lora.yaml train.max_minutes=10
  ftune train model=smollm2-135m method=lora method.r=16 data.train=reviews.csv
  ftune train model=smollm2-135m data.train=alpaca.jsonl train.max_minutes=20
"""

from __future__ import annotations

HELP = "fine-tune a model on your data"


def add_arguments(parser) -> None:
    parser.add_argument("settings", nargs="*", metavar="[CONFIG.yaml] [key=value ...]",
                        help="a YAML config and/or dotted overrides (see `ftune config`)")


def run(args) -> int:
    from ftune.api import train
    from ftune.cli.main import split_config_and_overrides
    from ftune.settings import load_config

    path, overrides = split_config_and_overrides(args.settings)
    config = load_config(path, overrides)  # every config problem surfaces here, before any import of torch
    result = train(config)
    {"classification": _classification, "sft": _sft, "dpo": _dpo}[result.objective](config, result)
    _summary(result)
    return 0


def _classification(config, result) -> None:
    from ftune.recipes.model_card import results_table

    for split in ("validation", "test"):
        if split in result.metrics:
            print(f"\n{split} split ({result.metrics[split]['model']['n']:,} rows):")
            print(results_table(result.metrics[split], f"{config.model.name} + {config.method.name}"))


def _sft(config, result) -> None:
    before, after = result.metrics["validation"]["before"], result.metrics["validation"]["after"]
    print(f"\nvalidation ({after['n']:,} examples, {after['tokens']:,} response tokens):")
    print(f"{'':<22}{'loss':>9}{'perplexity':>12}{'samples ending with EOS':>26}")
    for name, scores in (("base model (before)", before), ("fine-tuned (after)", after)):
        eos = f"{scores.get('samples_ended_with_eos', 0)} / {scores.get('samples', 0)}"
        print(f"{name:<22}{scores['loss']:>9.4f}{scores['perplexity']:>12.2f}{eos:>26}")
    labels = result.metrics["validation"].get("labels")
    if labels:
        from ftune.recipes.model_card import label_table

        print(f"\nlabel accuracy on the validation split ({labels['fine_tuned']['n']:,} rows, "
              "label chosen by likelihood):")
        print(label_table(labels, f"{config.model.name} + {config.method.name} (SFT)"))


def _dpo(config, result) -> None:
    before, after = result.metrics["validation"]["before"], result.metrics["validation"]["after"]
    print(f"\nheld-out preference pairs ({after['n']:,}):")
    print(f"{'':<18}{'preference acc.':>16}{'reward margin':>15}{'likelihood acc.':>17}")
    for name, scores in (("before training", before), ("after training", after)):
        print(f"{name:<18}{scores['preference_accuracy']:>16.4f}{scores['reward_margin']:>15.4f}"
              f"{scores['likelihood_accuracy']:>17.4f}")


def _summary(result) -> None:
    training = result.metrics["training"]
    rate = f", {training['tokens_per_second']:.0f} real tokens/s" if training.get("tokens_per_second") else ""
    evaluating = training.get("evaluation_seconds") or 0
    spent = f"{training['seconds'] - evaluating:.0f} s" + (f" (+ {evaluating:.0f} s of held-out evaluation)"
                                                           if evaluating >= 1 else "")
    print(f"\ntrained {training['trainable_parameters']:,} parameters ({training['trainable_share']:.2%}) "
          f"for {training['optimizer_steps']} steps in {spent}{rate}")
    plan = training.get("memory_plan")
    peak = f"peak memory {training['peak_training_memory_mb']:,.0f} MB"
    if plan:
        passes = (f"micro-batches of ≤ {plan['micro_batch_tokens']:,} tokens" if plan["micro_batch_tokens"]
                  else "whole batches") + (", gradient checkpointing" if plan["gradient_checkpointing"] else "")
        peak += f" (planned ≈ {plan['estimate_mb']:,.0f} MB of a {plan['budget_mb']:,.0f} MB budget; {passes})"
    print(peak)
    print(f"saved run: {result.run_dir}")
