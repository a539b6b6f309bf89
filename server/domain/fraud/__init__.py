"""Fraud risk engine: pure, synchronous, standard library only.

`assess(FraudInput, FraudContext, FraudSettings) -> Assessment` scores one payment from facts
the service layer looked up (velocity counters, blocklist hits, IP country, customer history);
`velocity_keys(FraudInput)` says which counters those facts need.
"""

from server.domain.fraud.engine import (
    IDENTIFIER_WINDOWS,
    IP_WINDOWS,
    assess,
    combine,
    velocity_by_kind,
    velocity_keys,
)
from server.domain.fraud.model import (
    HARD_BLOCK_SCORE,
    SIGNAL_GEOIP,
    SIGNAL_VELOCITY,
    Assessment,
    BlocklistEntry,
    BlocklistHit,
    BlocklistKind,
    BlocklistPage,
    CustomerHistory,
    Decision,
    FraudContext,
    FraudInput,
    Reason,
    StoredFraudSettings,
    VelocityKey,
    VelocityKind,
    VelocityReadings,
    Window,
    WindowStats,
)
from server.domain.fraud.normalize import (
    instrument_of,
    mask_token,
    normalize_blocklist_value,
    normalize_input,
)
from server.domain.fraud.settings import FraudSettings, ReviewAction, VelocityFailMode
from server.domain.fraud.signals import (
    ALL_SIGNALS,
    FAILURE_LOOKBACK,
    HISTORY_LIMIT,
    INSTRUMENT_LOOKBACK,
    SEED_SIGNALS,
    Signal,
)

__all__ = [
    "ALL_SIGNALS",
    "FAILURE_LOOKBACK",
    "HARD_BLOCK_SCORE",
    "HISTORY_LIMIT",
    "IDENTIFIER_WINDOWS",
    "INSTRUMENT_LOOKBACK",
    "IP_WINDOWS",
    "SEED_SIGNALS",
    "SIGNAL_GEOIP",
    "SIGNAL_VELOCITY",
    "Assessment",
    "BlocklistEntry",
    "BlocklistHit",
    "BlocklistKind",
    "BlocklistPage",
    "CustomerHistory",
    "Decision",
    "FraudContext",
    "FraudInput",
    "FraudSettings",
    "Reason",
    "ReviewAction",
    "Signal",
    "StoredFraudSettings",
    "VelocityFailMode",
    "VelocityKey",
    "VelocityKind",
    "VelocityReadings",
    "Window",
    "WindowStats",
    "assess",
    "combine",
    "instrument_of",
    "mask_token",
    "normalize_blocklist_value",
    "normalize_input",
    "velocity_by_kind",
    "velocity_keys",
]
