"""The run report: one HTML page of a run's numbers, from its stats and ledgers."""

from jobs.report.job import main, newest_run

__all__ = ["main", "newest_run"]
