"""Razorpay connector (payment links by default, or orders)."""

from server.connectors.razorpay.connector import RazorpayConnector

__all__ = ["RazorpayConnector"]
