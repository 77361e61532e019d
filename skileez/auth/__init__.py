"""Accounts, sign-in, profiles and the permission helpers other domains use."""
