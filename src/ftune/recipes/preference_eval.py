"""DPO's held-out evaluation, done by ftune's preference scoring instead of TRL's.

TRL evaluates a pair by running policy and reference over prompt + chosen and prompt +
rejected, padded to the batch's longest row, with its LM head over every position. Here a
prompt runs once and both replies continue from its cache, pairs are length-sorted, and the
head runs only at reply tokens (`ftune.eval.scoring`). On the HH-RLHF sample's 499 held-out
pairs TRL's evaluation took 41 minutes on 2 CPU cores.

The reference does not train: it is scored at the first evaluation and its figures serve the
later ones, so each evaluation after the first runs the policy only. The loss it reports is
DPO's sigmoid loss, ``-log σ(margin)``, so best-model selection still compares like with like;
the scores of every evaluation are kept by step, and the run's "after" figures are those of
the step whose weights it keeps, with no second pass. Over several processes the main one
scores and hands the scores to the others.
"""

from __future__ import annotations

from typing import Any


class PreferenceEvaluation:
    """Mixin for TRL's DPOTrainer: ``evaluate`` scores ``held_out_pairs`` (encoded pairs)."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.held_out_pairs: list[dict[str, list[int]]] = []
        self.beta = 0.1
        self.reference = None  # a separate model (full fine-tuning), or None and:
        self.disabled = None  # the technique's Method.disabled, switching its adapters off
        self.pad_id = 0
        self.scores_by_step: dict[int, dict[str, Any]] = {}  # every evaluation's scores, by step
        self.reference_scores = None  # the reference's, from the first evaluation on (it does not train)

    def evaluate(self, eval_dataset=None, ignore_keys=None, metric_key_prefix: str = "eval") -> dict[str, float]:
        import time

        from ftune.eval.baselines import PER_EXAMPLE
        from ftune.eval.preference import preference_scores, reference_logps

        started = time.monotonic()
        scores = None
        if self.accelerator.is_main_process:
            # in the evaluations' own precision (under training's autocast), unlike the "before" pass
            if self.reference_scores is None:
                self.reference_scores = reference_logps(self.model, self.held_out_pairs, self.reference, self.pad_id,
                                                        self.disabled)
            scores = preference_scores(self.model, self.held_out_pairs, self.beta, pad_id=self.pad_id,
                                       reference_scores=self.reference_scores)
        if self.args.world_size > 1:  # the others take the main process's scores: all keep the same best step
            from accelerate.utils import broadcast_object_list

            scores = broadcast_object_list([scores], from_process=0)[0]
        self.scores_by_step[self.state.global_step] = scores
        metrics = {f"{metric_key_prefix}_{key}": value for key, value in scores.items()
                   if key != "n" and not key.startswith(PER_EXAMPLE)}
        metrics[f"{metric_key_prefix}_runtime"] = round(time.monotonic() - started, 3)  # as Trainer.evaluate logs it
        self.log(metrics)
        self.control = self.callback_handler.on_evaluate(self.args, self.state, self.control, metrics)
        return metrics


def with_preference_evaluation(trainer_class: type) -> type:
    return type(f"PreferenceEvaluated{trainer_class.__name__}", (PreferenceEvaluation, trainer_class), {})
