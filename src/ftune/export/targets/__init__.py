"""Export targets: one module each, found by ftune.export.target's registry."""
