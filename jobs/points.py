"""Points: the daily expiry + reminders job, the birthday job, one reminder send, the nightly level
re-evaluation, and the release of pending points (every 10 minutes)."""

from __future__ import annotations

from ._context import app_context


def daily() -> dict:
    """Expire lots in batches (resumable), then plan and enqueue the 30/15/3-day reminders. Safe to
    run twice: expiry resumes from its cursor, reminders are UNIQUE per member, date and offset."""
    from mp_backend.loyalty import reminders

    with app_context():
        return reminders.run_daily()


def birthdays() -> dict:
    """Birthday points and greetings for today's birthdays in the merchant's time zone (29 February on
    28 February in other years). Safe to run twice: once per member and year by their unique keys."""
    from mp_backend.loyalty import reminders

    with app_context():
        return reminders.run_birthdays()


def send_reminder(reminder_id: int) -> str:
    from mp_backend.loyalty import reminders

    with app_context():
        return reminders.send(reminder_id)


def send_reminders(reminder_ids: list[int]) -> dict:
    """A chunk of reminders / greetings, each sent at most once (a rerun skips what was sent)."""
    from mp_backend.loyalty import reminders

    with app_context():
        return reminders.send_many(reminder_ids)


def evaluate_levels() -> int:
    from mp_backend.members import levels

    with app_context():
        return levels.evaluate_all()


def release_pending() -> int:
    """Make pending points whose days have passed usable, in batches. Safe to run twice or at once:
    each lot is flipped by a guarded UPDATE and recorded by one ``release:<lot>`` entry."""
    from mp_backend.loyalty import service as loyalty

    with app_context():
        return loyalty.release_pending()
