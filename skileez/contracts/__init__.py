"""Proposals and the contracts they become."""
