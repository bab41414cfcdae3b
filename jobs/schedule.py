"""The cron schedule, loaded by ``rq cron jobs.schedule`` (Procfile ``cron``)."""

from rq import cron

from jobs import maintenance, recharge, spending

cron.register(maintenance.check_ledger, "default", cron="30 3 * * *", name="nightly ledger check")
cron.register(recharge.reconcile_pending_orders, "default", cron="* * * * *", name="recharge orderquery")
cron.register(spending.reconcile_pending_payments, "default", cron="* * * * *", name="order payment orderquery")
