"""``train.report_to`` for a search: one parent record (an MLflow parent run named after the
search directory, holding the base config and the space) that each trial's run joins as a child,
tagged with the trial's number, parameters and state once it ends; the best value and the trial
counts as the search goes, and best.yaml, trials.csv and report.html at the end. A resumed
search continues the same parent. Trackers with no parent (TensorBoard) record each trial as
any run."""

from __future__ import annotations

from pathlib import Path

from ftune.tracking.values import metric_name
from ftune.tuning.report import TuneResult

TAG = "ftune.trial"  # ftune.trial.number, ftune.trial.state, ftune.trial.param.<key>, ftune.trial.note
ENDED = ("complete", "pruned", "failed")


class SearchTracking:
    def __init__(self, plan, directory: Path, echo=print):
        from ftune.tracking import open_search_tracking

        space = {key: dimension.describe() for key, dimension in plan.space.items()}
        self.parents = open_search_tracking(plan.config, space, Path(directory), echo)
        self.metric = plan.metric
        self.tagged: set[int] = set()  # trials whose child run is tagged with its final state
        self.logged: dict[str, float] = {}

    def joined(self):
        """While inside, the runs this process trains (the trials) are children of the parent."""
        return self.parents.joined()

    def trials_ended(self, result: TuneResult) -> None:
        """Tag each trial's run that ended since last time; update the best value and the counts."""
        if not self.parents.parents:
            return
        for row in result.rows:
            if row["state"] not in ENDED or row["number"] in self.tagged or not row["run_dir"]:
                continue
            self.tagged.add(row["number"])
            tags = {f"{TAG}.number": str(row["number"]), f"{TAG}.state": row["state"],
                    **{f"{TAG}.param.{key}": str(value) for key, value in row["params"].items()}}
            if row["note"]:
                tags[f"{TAG}.note"] = row["note"]
            # a trial whose process was killed left its run running: it ends here
            self.parents.tag_child(Path(row["run_dir"]), tags, end_as="KILLED" if row["state"] == "failed" else None)
        figures = {"trials_complete": sum(r["state"] == "complete" for r in result.rows),
                   "trials_pruned": sum(r["state"] == "pruned" for r in result.rows)}
        if result.best is not None:
            figures[metric_name(f"best_{self.metric}")] = result.best["value"]
        if figures != self.logged:  # a history over the finished trials, one point as each ends
            self.parents.log_metrics(figures, step=result.finished)
            self.logged = figures

    def finish(self, result: TuneResult) -> None:
        self.trials_ended(result)
        self.parents.finish(result.files, result.interrupted)

    def fail(self) -> None:
        self.parents.fail()
