"""A local Twilio Messages API: sends with Twilio's validation and error codes, per-number
states (invalid, STOP'd, landline, unreachable), injected faults by count or by rate
(429/5xx), and an admin API (`/_sms/...`) to read what was sent.
"""

from spoke.sandbox.sms.app import create_sms_app, serve
from spoke.sandbox.sms.store import Fault, SmsStore

__all__ = ["Fault", "SmsStore", "create_sms_app", "serve"]
