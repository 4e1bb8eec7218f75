"""Who may call emcp, and which tools each caller may use."""

from emcp.auth.caller import ANONYMOUS, Caller, caller_of
from emcp.auth.guard import AuthGuard
from emcp.auth.tokens import TokenBook, new_token

__all__ = ["ANONYMOUS", "AuthGuard", "Caller", "TokenBook", "caller_of", "new_token"]
