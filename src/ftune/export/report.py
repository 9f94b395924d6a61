"""The re-check as a table: the PyTorch run beside the artifact in its runtime."""

from __future__ import annotations

from typing import Any


def check_table(report: dict[str, Any]) -> str:
    from ftune.recipes.results import Column, Table

    check = report["check"]
    reference, artifact = check["reference"], check["artifact"]
    artifact = {**artifact, "size_mb": report["size_mb"]}
    if "accuracy" in reference:
        columns = [Column("accuracy", "accuracy"), Column("macro-F1", "f1"), Column("agreement", "agreement"),
                   Column("ms/example", "ms_per_example", ".2f"), Column("size MB", "size_mb", ",.1f")]
        title = f"held-out split ({reference['n']:,} texts)"
    else:
        for scores in (reference, artifact):
            scores["same_replies"] = (f"{scores['identical_replies']} / {scores['replies']}"
                                      if "identical_replies" in scores else "-")
            scores["same_tokens"] = (f"{scores['same_tokenization']} / {scores['replies']}"
                                     if "same_tokenization" in scores else "-")
        columns = [Column("loss", "loss"), Column("perplexity", "perplexity", ".3f"),
                   Column("same greedy replies", "same_replies", ""),
                   Column("same prompt tokens", "same_tokens", ""),
                   Column("ms/example", "ms_per_example", ".1f"),
                   Column("gen. tokens/s", "generated_tokens_per_second", ".1f"), Column("size MB", "size_mb", ",.1f")]
        title = f"held-out split ({reference['n']:,} responses, {reference['tokens']:,} tokens)"
    return Table(title, columns, [(reference["runtime"], reference),
                                  (f"{report['target']} ({artifact['runtime']})", artifact)]).text()
