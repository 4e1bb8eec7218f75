"""Transports: bytes to JSON-RPC messages and back, nothing else."""
