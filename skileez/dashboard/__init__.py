"""The signed-in dashboard: one page that gathers every domain's news for a person.

It reads contracts, sessions and notifications, so it sits above the domains, beside
admin (core used to hold it, which made core import the packages built on it).
"""
