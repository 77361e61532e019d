"""Reading RQ's failed-job registries for the admin jobs page."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

from flask import current_app
from rq.exceptions import NoSuchJobError
from rq.job import Job
from rq.registry import FailedJobRegistry

from skileez.core.queue import get_queue


@dataclass
class FailedJob:
    id: str
    queue: str
    description: str
    function: str
    args: str
    ended_at: datetime | None
    error: str


def _registries():
    for name in current_app.config["RQ_QUEUES"]:
        queue = get_queue(name)
        yield name, queue, FailedJobRegistry(queue=queue)


def failed_job_count() -> int:
    return sum(registry.count for _, _, registry in _registries())


def failed_jobs(limit: int = 100) -> list[FailedJob]:
    found: list[FailedJob] = []
    for name, queue, registry in _registries():
        for job_id in registry.get_job_ids(0, limit - 1):
            try:
                job = Job.fetch(job_id, connection=queue.connection)
            except NoSuchJobError:
                continue
            ended = job.ended_at
            if ended is not None and ended.tzinfo is None:
                ended = ended.replace(tzinfo=UTC)
            result = job.latest_result()  # a Redis round trip each time it is asked
            exc_info = result.exc_string if result else None
            found.append(FailedJob(
                id=job.id, queue=name, description=job.description or job.func_name,
                function=job.func_name, args=repr(job.args)[:200], ended_at=ended,
                error=(exc_info or "")[-4000:],
            ))
    found.sort(key=lambda j: j.ended_at or datetime.min.replace(tzinfo=UTC), reverse=True)
    return found[:limit]


def act_on_failed_job(queue_name: str, job_id: str, action: str) -> bool:
    queue = get_queue(queue_name)
    registry = FailedJobRegistry(queue=queue)
    if job_id not in registry.get_job_ids():
        return False
    if action == "requeue":
        registry.requeue(job_id)
    else:
        registry.remove(job_id, delete_job=True)
    return True
