"""A labeled classification task trained as chat (objective=sft on labeled rows): the data
conversion, and the label-choice scores of the base model (zero-/few-shot) and the tuned one."""

from __future__ import annotations

from typing import Any

from ftune.config import Config, split_seed


class LabeledTask:
    """A labeled split phrased as chat, and the label-choice scores that go with it."""

    def __init__(self, data, words: list[str], instruction: str):
        self.data, self.words, self.instruction = data, words, instruction

    def accuracy(self, model, tokenizer, template, shots=(), shots_per_text=None) -> dict[str, Any]:
        from ftune.eval.label_scoring import label_accuracy

        v = self.data.validation
        return label_accuracy(model, tokenizer, template, v.texts, v.label_ids, self.data.label_names, self.words,
                              self.instruction, shots, shots_per_text=shots_per_text)

    def base_scores(self, config: Config, model, tokenizer, template, echo=print) -> dict[str, Any]:
        """The chosen baselines (majority class, TF-IDF) and the base model prompted zero-shot,
        with ``eval.few_shot`` fixed examples, and with as many retrieved (the most similar
        training rows, by ``eval.retrieval``); predictions kept for intervals and the verdict."""
        from ftune.data.labeled_chat import few_shot_turns
        from ftune.eval.baselines import majority_baseline, tfidf_baseline
        from ftune.eval.prompting_baselines import few_shot_key, retrieval_key

        t, v, names = self.data.train, self.data.validation, self.data.label_names
        chosen, k = config.eval.chosen_baselines(), config.eval.few_shot
        scores = {}
        if "majority" in chosen:
            scores["majority"] = majority_baseline(t.label_ids, v.label_ids, names)
        if "tfidf" in chosen:
            scores[f"tfidf_{config.eval.baseline_model}"] = tfidf_baseline(
                t.texts, t.label_ids, v.texts, v.label_ids, names, config.eval.baseline_model, config.train.seed)
        scores["base_zero_shot"] = self.accuracy(model, tokenizer, template)
        if k and "few_shot" in chosen:
            shots = few_shot_turns(t.texts, t.label_ids, self.words, self.instruction, k)
            scores[few_shot_key(k)] = self.accuracy(model, tokenizer, template, shots)
        if k and "retrieval" in chosen:
            echo(f"ftune: finding the {k} training rows nearest each held-out row ({config.eval.retrieval}) ...")
            scores[retrieval_key(k)] = self.accuracy(model, tokenizer, template,
                                                     shots_per_text=self.retrieved_shots(config, k))
        return scores

    def retrieved_shots(self, config: Config, k: int) -> list[list]:
        """For each held-out text, its ``k`` nearest training rows (of at most ``eval.baseline_rows``,
        a stratified sample) as solved earlier turns, the most similar nearest the question."""
        from ftune.data.conversation import Message
        from ftune.data.labeled_chat import label_prompt
        from ftune.data.split import capped_rows
        from ftune.eval.retrieval import nearest_training_rows

        t = self.data.train
        rows = capped_rows(t.label_ids, config.eval.baseline_rows, config.train.seed)
        found = nearest_training_rows(config.eval.retrieval, [t.texts[i] for i in rows], self.data.validation.texts, k)
        return [[turn for j in reversed(nearest) for turn in
                 (*label_prompt(t.texts[rows[j]], self.instruction), Message("assistant", self.words[t.label_ids[rows[j]]]))]
                for nearest in found]


def labeled_task_as_chat(config: Config):
    """Classification data (with its honest split) turned into SFT conversations."""
    from ftune.data.labeled_chat import default_instruction, label_words_for, to_conversations
    from ftune.data.prepare import build_classification_data
    from ftune.data.prepare_generative import GenerativeData

    data = build_classification_data(config.data, split_seed(config))
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
