"""boto3 clients, built once per process (per Lambda container) and reused warm.

Clients are created on first use rather than at import so that importing a handler needs
no region or credentials (the local runner imports handlers before it starts moto).
``reset_clients()`` drops them (tests, or a runner switching endpoints).
"""

from __future__ import annotations

import threading

import boto3
from botocore.config import Config

# Standard retry mode: botocore retries throttling/5xx a few times itself before we map
# what is left to TransientAwsError and let Step Functions retry the whole stage.
CLIENT_CONFIG = Config(retries={"mode": "standard", "max_attempts": 4}, connect_timeout=5,
                       read_timeout=30)

_clients: dict[str, object] = {}
_lock = threading.Lock()


def client(service: str):
    """The shared boto3 client for ``service`` ("s3", "dynamodb")."""
    c = _clients.get(service)
    if c is None:
        with _lock:
            c = _clients.get(service)
            if c is None:
                c = boto3.client(service, config=CLIENT_CONFIG)
                _clients[service] = c
    return c


def reset_clients() -> None:
    with _lock:
        _clients.clear()
