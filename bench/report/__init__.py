"""The report of a run: ``render`` writes REPORT.md from the raw figures, ``plots`` the PNGs."""
