"""Thousands of queries from a file: streamed, resumable runs paced by a rate limiter
(``runs``, ``files``, ``limiter``), or OpenAI's Batch API at half the price (``batch``).
See docs/bulk.md."""

from .limiter import AdaptiveLimiter
from .runs import BULK_CONCURRENCY, Summary, orchestrate_file, route_file, run_file

__all__ = [
    "BULK_CONCURRENCY",
    "AdaptiveLimiter",
    "Summary",
    "orchestrate_file",
    "route_file",
    "run_file",
]
