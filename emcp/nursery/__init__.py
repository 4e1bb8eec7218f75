"""The supervisor: sessions as nurseries, a bounded registry that owns them."""

from emcp.nursery.registry import RegistryFull, SessionRegistry, open_session_registry
from emcp.nursery.session import DuplicateRequest, Overloaded, Session, SessionClosed

__all__ = [
    "DuplicateRequest",
    "Overloaded",
    "RegistryFull",
    "Session",
    "SessionClosed",
    "SessionRegistry",
    "open_session_registry",
]
