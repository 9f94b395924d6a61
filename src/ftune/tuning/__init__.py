"""Hyper-parameter search (``ftune tune``) on Optuna: search spaces (``space``), the study with
its objective, pruning and resume (``study``), and what it leaves behind (``report``)."""
