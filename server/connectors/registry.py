"""PSP name → connector. `build_default_registry()` knows every connector Triveni ships."""

from __future__ import annotations

from collections.abc import Iterable, Iterator

from server.connectors.base import Connector, ConnectorAccount
from server.connectors.cashfree import CashfreeConnector
from server.connectors.instamojo import InstamojoConnector
from server.connectors.payu import PayuConnector
from server.connectors.razorpay import RazorpayConnector
from server.connectors.simulator import SimulatorConnector
from server.errors import ConfigurationError

__all__ = ["ConnectorRegistry", "build_default_registry"]


class ConnectorRegistry:
    """One connector instance per PSP name; connectors are shared by all of a PSP's accounts."""

    def __init__(self, connectors: Iterable[Connector] = ()) -> None:
        self._connectors: dict[str, Connector] = {}
        for connector in connectors:
            self.register(connector)

    def register(self, connector: Connector) -> None:
        """Add a connector under its `psp` name; a second one for the same PSP is refused."""
        if connector.psp in self._connectors:
            raise ConfigurationError(f"a connector for {connector.psp} is already registered")
        self._connectors[connector.psp] = connector

    def get(self, psp: str) -> Connector:
        """The connector for `psp`; ConfigurationError (naming the known ones) if none."""
        try:
            return self._connectors[psp]
        except KeyError:
            raise ConfigurationError(
                f"no connector for PSP {psp!r}; known: {', '.join(self.names())}") from None

    def for_account(self, account: ConnectorAccount) -> Connector:
        return self.get(account.psp)

    def names(self) -> tuple[str, ...]:
        return tuple(sorted(self._connectors))

    def __contains__(self, psp: object) -> bool:
        return psp in self._connectors

    def __iter__(self) -> Iterator[Connector]:
        return iter(self._connectors.values())

    def __len__(self) -> int:
        return len(self._connectors)


def build_default_registry() -> ConnectorRegistry:
    """simulator, instamojo, razorpay, cashfree and payu, each a fresh instance."""
    return ConnectorRegistry([SimulatorConnector(), InstamojoConnector(), RazorpayConnector(),
                              CashfreeConnector(), PayuConnector()])
