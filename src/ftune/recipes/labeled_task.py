"""A labeled classification task trained as chat (objective=sft on labeled rows): the data
conversion, and the label-choice scores of the base model (zero-/few-shot) and the tuned one."""

from __future__ import annotations

from typing import Any

from ftune.config import Config


class LabeledTask:
    """A labeled split phrased as chat, and the label-choice scores that go with it."""

    def __init__(self, data, words: list[str], instruction: str):
        self.data, self.words, self.instruction = data, words, instruction

    def accuracy(self, model, tokenizer, template, shots=()) -> dict[str, Any]:
        from ftune.eval.label_scoring import label_accuracy

        v = self.data.validation
        return label_accuracy(model, tokenizer, template, v.texts, v.label_ids, self.data.label_names, self.words,
                              self.instruction, shots)

    def base_scores(self, config: Config, model, tokenizer, template) -> dict[str, Any]:
        """Majority class, TF-IDF, and the base model prompted zero- and few-shot."""
        from ftune.data.labeled_chat import few_shot_turns
        from ftune.eval.baselines import majority_baseline, tfidf_baseline, without_predictions

        t, v, names = self.data.train, self.data.validation, self.data.label_names
        shots = few_shot_turns(t.texts, t.label_ids, self.words, self.instruction, config.eval.few_shot)
        scores = {"majority": without_predictions(majority_baseline(t.label_ids, v.label_ids, names)),
                  f"tfidf_{config.eval.baseline_model}": without_predictions(tfidf_baseline(
                      t.texts, t.label_ids, v.texts, v.label_ids, names, config.eval.baseline_model, config.train.seed)),
                  "base_zero_shot": self.accuracy(model, tokenizer, template)}
        if config.eval.few_shot:
            scores[f"base_{config.eval.few_shot}_shot"] = self.accuracy(model, tokenizer, template, shots)
        return scores


def labeled_task_as_chat(config: Config):
    """Classification data (with its honest split) turned into SFT conversations."""
    from ftune.data.labeled_chat import default_instruction, label_words_for, to_conversations
    from ftune.data.prepare import build_classification_data
    from ftune.data.prepare_generative import GenerativeData

    data = build_classification_data(config.data, config.train.seed)
    words = label_words_for(data.label_names, config.data.label_words)
    instruction = config.data.instruction or default_instruction(words)
    conversations = GenerativeData(
        format="classification", kind="sft",
        train=to_conversations(data.train.texts, data.train.label_ids, words, instruction),
        validation=to_conversations(data.validation.texts, data.validation.label_ids, words, instruction),
        manifest={**data.manifest, "format": "classification (as chat)", "instruction": instruction,
                  "label_words": dict(zip(data.label_names, words))},
        notices=data.notices,
    )
    return conversations, LabeledTask(data, words, instruction)
