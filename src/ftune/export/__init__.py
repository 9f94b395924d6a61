"""Ship a finished run: ``ftune export RUN --to TARGET``. Each target is one module in
``ftune.export.targets``; every artifact is loaded again in the runtime that will run it and
measured on the run's own held-out split (``ftune.export.check``)."""
