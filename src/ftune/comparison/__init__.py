"""ftune compare: run several techniques on the same data, measure them, report."""
