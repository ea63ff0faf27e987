"""The cost planner: what a recipe would cost on a whole crawl, before any cluster time is spent."""

from jobs.plan.job import main

__all__ = ["main"]
