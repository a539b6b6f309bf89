"""Cashfree PG connector."""

from server.connectors.cashfree.connector import CashfreeConnector

__all__ = ["CashfreeConnector"]
