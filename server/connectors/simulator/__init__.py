"""The simulator PSP: connector (stateless translator) plus the local HTTP PSP it talks to.

Only the connector is imported here; the Starlette app lives in `server.connectors.simulator.app`
and is imported by whoever serves it (dev stack, tests, `python -m server.connectors.simulator`).
"""

from server.connectors.simulator.connector import SimulatorConnector

__all__ = ["SimulatorConnector"]
