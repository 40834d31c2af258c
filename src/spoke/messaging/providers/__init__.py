"""Provider adapters: one module per vendor, each knowing nothing about Spoke's database.

An adapter takes messages and returns one `SendResult` per message; what to do with a dead
token or a failure is the caller's business (`messaging.fanout`).
"""

from spoke.messaging.providers.base import PushMessage, PushProvider, SendResult

__all__ = ["PushMessage", "PushProvider", "SendResult"]
