"""A local Firebase Cloud Messaging: the OAuth token endpoint a service-account key points
at, `POST /v1/projects/{id}/messages:send`, per-token state (valid, unregistered, invalid),
latency and error injection, and an admin API (`/_fcm/...`) to read what was received.
"""

from spoke.sandbox.fcm.app import create_fcm_app, serve
from spoke.sandbox.fcm.store import Fault, FcmStore

__all__ = ["Fault", "FcmStore", "create_fcm_app", "serve"]
