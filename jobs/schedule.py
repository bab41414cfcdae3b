"""The cron schedule, loaded by ``rq cron jobs.schedule`` (Procfile ``cron``)."""

from rq import cron

from jobs import maintenance, points, recharge, reports, spending

cron.register(maintenance.check_ledger, "default", cron="30 3 * * *", name="nightly ledger check")
cron.register(recharge.reconcile_pending_orders, "default", cron="* * * * *", name="recharge orderquery")
cron.register(spending.reconcile_pending_payments, "default", cron="* * * * *", name="order payment orderquery")
# 00:10 UTC+8 by default (rq cron reads the host's clock: set it to the merchant's zone)
cron.register(points.daily, "default", cron="10 0 * * *", name="points expiry and reminders")
cron.register(points.birthdays, "default", cron="0 9 * * *", name="birthday greetings and points")
cron.register(points.release_pending, "default", cron="*/10 * * * *", name="pending points release")
cron.register(points.evaluate_levels, "default", cron="40 2 * * *", name="nightly level re-evaluation")
# the report summaries: ledger rows above the watermark folded in (README "Console API")
cron.register(reports.fold_ledger, "default", cron="* * * * *", name="report summaries")
