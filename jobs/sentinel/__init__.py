"""The new-crawl sentinel: claims each new crawl once under a lease and starts its run."""

from jobs.sentinel.job import Schedule, main, run

__all__ = ["Schedule", "main", "run"]
