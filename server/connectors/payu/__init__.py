"""PayU India connector."""

from server.connectors.payu.connector import PayuConnector

__all__ = ["PayuConnector"]
