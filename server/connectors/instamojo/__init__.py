"""Instamojo connector (API v2, or v1.1 by account option)."""

from server.connectors.instamojo.connector import InstamojoConnector

__all__ = ["InstamojoConnector"]
