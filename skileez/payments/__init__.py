"""Payments, the escrow ledger, payouts, refunds and disputes."""
