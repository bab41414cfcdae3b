"""The cron schedule, loaded by ``rq cron jobs.schedule`` (Procfile ``cron``)."""

from rq import cron

from jobs import maintenance

cron.register(maintenance.check_ledger, "default", cron="30 3 * * *", name="nightly ledger check")
