"""Jobs are enqueued only after the transaction commits, and run the same way in process or on RQ."""

from __future__ import annotations

import pytest
from rq import Queue

from mp_backend.extensions import db, jobs
from mp_backend.ledger import service as ledger
from mp_backend.transaction import transactional

RAN: list[str] = []


def record(tag: str) -> str:
    """A job that leaves a trace: in process in RAN, on RQ as its return value."""
    RAN.append(tag)
    return tag


@transactional
def _credit_and_enqueue(member_id: int, fail: bool) -> None:
    ledger.credit(member_id, 100, key=f"job-test-{fail}", operator="test")
    jobs.enqueue_after_commit("tests.test_jobs.record", "rolled back" if fail else "committed", job_id=f"job-{fail}")
    if fail:
        raise RuntimeError("rolled back after enqueue")


def _run_queue(app) -> list:  # type: ignore[no-untyped-def]
    """Run a real RQ worker (burst) over the queue; returns the finished jobs' results."""
    from jobs.worker import make_worker

    queue = Queue("default", connection=jobs.redis)
    job_ids = list(queue.job_ids)
    db.session.remove()
    worker = make_worker(app)
    worker.work(burst=True)
    return [queue.fetch_job(job_id).return_value() for job_id in job_ids]


def test_job_runs_after_commit_and_not_after_rollback(app, make_member):
    # given a member
    member_id = make_member()
    RAN.clear()
    # when one transaction commits after enqueueing a job and another rolls back after enqueueing one
    _credit_and_enqueue(member_id, False)
    with pytest.raises(RuntimeError):
        _credit_and_enqueue(member_id, True)
    # then exactly the committed one is enqueued (RQ) or has run (in process), and the money agrees
    assert ledger.get_balance(member_id).principal_fen == 100
    if jobs.queue is not None:
        assert list(jobs.queue.job_ids) == ["job-False"]
        assert _run_queue(app) == ["committed"]
    else:
        assert RAN == ["committed"]


def test_nightly_ledger_check_job_reports_no_problem(app, make_member):
    # given some ledger activity
    member_id = make_member(1_000, 100)
    ledger.debit(member_id, 500, key="d", operator="test")
    # when the nightly job runs (through RQ when configured)
    jobs.enqueue("jobs.maintenance.check_ledger", job_id="nightly")
    # then it finds nothing broken
    if jobs.queue is not None:
        assert _run_queue(app) == [0]
