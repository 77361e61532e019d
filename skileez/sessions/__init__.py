"""The session life cycle, reschedules, ratings and calendars."""
