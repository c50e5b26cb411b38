"""The worker runtime, split by concern: fetching, running, acking, lifecycle."""

from ._worker import Worker

__all__ = ["Worker"]
