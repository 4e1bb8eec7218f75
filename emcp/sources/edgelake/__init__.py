"""EdgeLake over its REST API: the wire reader, the SQL row parser, the errors and the Trio client.

EdgeLake's replies are not always valid HTTP (errors in the reason phrase,
bodies declared chunked but sent raw, a second chunked stream after the
first), so the protocol logic lives in sans-IO modules that read every
recorded framing, and the client is a thin Trio layer over them.
"""
