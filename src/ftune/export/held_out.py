"""The run's own held-out split, rebuilt from its recorded settings (same files, same seed,
same split), in the shape ``ftune.export.check`` scores."""

from __future__ import annotations

from ftune.config import split_seed
from ftune.errors import FtuneError
from ftune.export.check import HeldOutResponses, HeldOutTexts
from ftune.export.finished_run import FinishedRun


def held_out_texts(run: FinishedRun, limit: int | None = None) -> HeldOutTexts:
    from ftune.data.prepare import build_classification_data

    config = run.config
    _require_data(run)
    data = build_classification_data(config.data, split_seed(config))
    names = run.info["labels"]
    index = {name: i for i, name in enumerate(names)}
    split = data.validation
    labels = [index[data.label_names[i]] for i in split.label_ids]
    texts = split.texts[:limit] if limit else split.texts
    return HeldOutTexts(list(texts), labels[:len(texts)], names)


def held_out_responses(run: FinishedRun, tokenizer, limit: int | None = 100, prompts: int = 5,
                       max_new_tokens: int = 48) -> HeldOutResponses:
    """Encoded held-out conversations (the chosen replies of preference pairs) and the prompts
    of the first ``prompts`` of them, for greedy replies."""
    from ftune.data.encode import encode_examples, stop_token_ids
    from ftune.data.masking import encode_prompt
    from ftune.data.templates import resolve_template
    from ftune.recipes.sft import sample_prompts

    config = run.config
    _require_data(run)
    if run.info.get("labels"):  # a labeled task trained as chat
        from ftune.recipes.labeled_task import labeled_task_as_chat

        examples = labeled_task_as_chat(config)[0].validation
    else:
        from ftune.data.prepare_generative import build_generative_data

        examples = build_generative_data(config.data, split_seed(config)).validation
    examples = examples[:limit] if limit else examples
    template = resolve_template(run.info.get("template", "auto"), tokenizer)
    items, _ = encode_examples(examples, template, tokenizer, run.max_length)
    prompt_ids = [encode_prompt(p, template, tokenizer) for p in sample_prompts(examples, prompts)]
    return HeldOutResponses(items, prompt_ids, stop_token_ids(tokenizer), max_new_tokens)


def _require_data(run: FinishedRun) -> None:
    from pathlib import Path

    missing = [p for p in (run.config.data.train, run.config.data.validation) if p and not Path(p).is_file()]
    if missing:
        raise FtuneError(f"{run.path}: its data file {missing[0]} is gone; the export is checked on the run's "
                         "held-out split, so it needs the data the run was trained on")
