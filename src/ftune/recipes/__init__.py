"""Whole jobs, one module per objective: data -> model -> technique -> training -> before/after
evaluation -> saved run. The layer that joins training and evaluation."""
