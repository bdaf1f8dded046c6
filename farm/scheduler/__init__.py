"""Jobs queued in the store, one worker per device, retries, timeouts and resume (:mod:`.core`)."""

from farm.scheduler.core import Failure, JobEvent, RunReport, Scheduler, Submission

__all__ = ["Scheduler", "Submission", "JobEvent", "RunReport", "Failure"]
