"""`TwilioProvider.find_sent`, the look-up a resumed fan-out makes for what a dead run had
in flight, against the emulator's message list over loopback HTTP."""

from __future__ import annotations

import asyncio
from datetime import timedelta

import pytest
from tests.messaging.channel_support import Sms, unique_phone

from spoke.core.clock import utcnow
from spoke.messaging.providers.fcm import RetryPolicy
from spoke.messaging.providers.sms import LookupFailed, SmsMessage, TwilioAccount, TwilioProvider

SENDER = "+15005550006"


def _provider(sms: Sms, account: dict[str, str]) -> TwilioProvider:
    twilio = TwilioAccount(
        account["account_sid"], account["auth_token"], from_number=SENDER, base_url=sms.url
    )
    return TwilioProvider(twilio, retry=RetryPolicy(attempts=2, base_delay=0.01))


def test_a_message_is_found_past_the_first_page_and_only_once(sms: Sms) -> None:
    account, to = sms.account(), unique_phone()
    since = utcnow()
    wanted = sms.post_message(account, to, "Sale today only")
    for i in range(60):  # later messages push it to the second page of 50
        sms.post_message(account, to, f"other {i}")
    sms.post_message(account, to, "Sale today only", sender="+15005550001")  # not our sender

    async def look() -> tuple[str | None, str | None, str | None]:
        provider = _provider(sms, account)
        try:
            message = SmsMessage(to, "Sale today only")
            first = await provider.find_sent(message, since)
            again = await provider.find_sent(message, since, skip={wanted})
            other = await provider.find_sent(SmsMessage(unique_phone(), "Sale today only"), since)
            return first, again, other
        finally:
            await provider.aclose()

    assert asyncio.run(look()) == (wanted, None, None)


def test_messages_from_before_the_send_started_do_not_count(sms: Sms) -> None:
    account, to = sms.account(), unique_phone()
    sms.post_message(account, to, "Hi")

    async def look() -> str | None:
        provider = _provider(sms, account)
        try:
            return await provider.find_sent(SmsMessage(to, "Hi"), utcnow() + timedelta(seconds=2))
        finally:
            await provider.aclose()

    assert asyncio.run(look()) is None


def test_a_refused_look_up_raises(sms: Sms) -> None:
    account, to = sms.account(), unique_phone()
    sms.fault(503, count=2, to=to)  # both attempts

    async def look() -> str | None:
        provider = _provider(sms, account)
        try:
            return await provider.find_sent(SmsMessage(to, "Hi"), utcnow())
        finally:
            await provider.aclose()

    with pytest.raises(LookupFailed, match="20503"):
        asyncio.run(look())
