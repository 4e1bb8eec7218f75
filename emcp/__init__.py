"""emcp: an MCP server on Trio for EdgeLake data.

Embed it in a Trio program with `open_server(settings)` or
`await nursery.start(serve, settings)`.
"""

__version__ = "0.1.0"

from emcp.server import EmcpServer, open_server, serve
from emcp.settings import Settings, load_settings

__all__ = ["EmcpServer", "Settings", "__version__", "load_settings", "open_server", "serve"]
