"""Mechanics every domain uses: state transitions with audit, money, time zones."""
