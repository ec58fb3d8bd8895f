"""The drift check's memory: a breakage is reported once per channel, forgotten when mended."""

from __future__ import annotations

from onboarding.drift import Channel, Reported, after, channels_due, remembered, waves

ACCESS = {
    "name": "mailbox_access",
    "state": "broken",
    "detail": "no FullAccess",
    "fix": "Add-MailboxPermission",
}
APP = {"name": "app_registration", "state": "broken", "detail": "deleted", "fix": "Restore"}
BOTH = frozenset(Channel)


def test_a_new_breakage_goes_to_every_channel_and_is_then_remembered():
    assert channels_due(None, ACCESS) == (Channel.WEBHOOK, Channel.EMAIL)
    assert after(None, ACCESS, [Channel.WEBHOOK, Channel.EMAIL]) == Reported("mailbox_access", BOTH)


def test_the_same_breakage_the_next_day_is_not_reported_again():
    told = Reported("mailbox_access", BOTH)
    assert channels_due(told, ACCESS) == ()
    assert after(told, ACCESS, []) == told


def test_a_channel_that_failed_is_tried_again_alone_the_next_day():
    half = Reported("mailbox_access", frozenset({Channel.EMAIL}))
    assert channels_due(half, ACCESS) == (Channel.WEBHOOK,)
    assert after(half, ACCESS, [Channel.WEBHOOK]) == Reported("mailbox_access", BOTH)


def test_another_link_breaking_is_news_and_a_mended_chain_is_forgotten():
    told = Reported("mailbox_access", BOTH)
    assert channels_due(told, APP) == (Channel.WEBHOOK, Channel.EMAIL)
    assert after(told, APP, [Channel.EMAIL]) == Reported("app_registration", frozenset({Channel.EMAIL}))
    assert channels_due(told, None) == () and after(told, None, []) is None


def test_the_memory_round_trips_and_a_malformed_one_is_forgotten():
    memory = {"onb-1": Reported("credential", BOTH).to_json(), "onb-2": {"no": "link"}}
    assert remembered({"reported": memory}) == {"onb-1": Reported("credential", BOTH)}
    assert remembered(None) == {} and remembered({"reported": "x"}) == {}


def test_onboardings_are_diagnosed_a_few_at_a_time():
    assert [list(w) for w in waves(list(range(12)), 5)] == [[0, 1, 2, 3, 4], [5, 6, 7, 8, 9], [10, 11]]
