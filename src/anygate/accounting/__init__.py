"""Accounting: usage, prices, budget periods, limiters and the usage ledger."""
