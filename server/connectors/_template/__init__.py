"""A copyable connector folder: copy to server/connectors/<psp>/ and fill in every TODO."""

from server.connectors._template.connector import TemplateConnector

__all__ = ["TemplateConnector"]
