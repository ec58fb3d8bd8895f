from datetime import UTC, datetime, timedelta

from hypothesis import given
from hypothesis import strategies as st

from onboarding import plan
from onboarding.domain import ConsentMode, Decision, DecisionEvent, Outcome

NOW = datetime(2026, 1, 1, tzinfo=UTC)


def test_waits_for_the_next_reminder_but_never_past_the_deadline():
    deadline = NOW + timedelta(hours=30)
    assert plan.next_wake(NOW, deadline, timedelta(hours=24)) == NOW + timedelta(hours=24)
    assert plan.next_wake(NOW + timedelta(hours=24), deadline, timedelta(hours=24)) == deadline


def test_no_single_timer_is_longer_than_six_days():
    deadline = NOW + timedelta(days=30)
    assert plan.next_wake(NOW, deadline, timedelta(days=20)) == NOW + timedelta(days=6)


def test_backoff_doubles_and_is_capped():
    assert [plan.backoff(a, 10, 60).total_seconds() for a in range(5)] == [10, 20, 40, 60, 60]


def test_a_decision_counts_only_for_the_current_wait_and_mode():
    def event(decision: Decision, nonce: str = "n1") -> DecisionEvent:
        return DecisionEvent(decision, nonce=nonce, mailbox_digest="d1", approver="oid-1")

    consented = event(Decision.CONSENTED)
    assert plan.accepts(consented, nonce="n1", mode=ConsentMode.CONSENT, digest="d1")
    assert not plan.accepts(consented, nonce="n0", mode=ConsentMode.CONSENT, digest="d1")
    assert not plan.accepts(consented, nonce="n1", mode=ConsentMode.GRANT, digest="d1")
    assert plan.accepts(event(Decision.REJECTED), nonce="n1", mode=ConsentMode.GRANT, digest="d1")


def test_a_decision_on_another_mailbox_list_or_by_nobody_is_not_accepted():
    on_other_list = DecisionEvent(Decision.APPROVED, nonce="n1", mailbox_digest="d-other", approver="oid-1")
    assert not plan.accepts(on_other_list, nonce="n1", mode=ConsentMode.GRANT, digest="d1")
    unsigned = DecisionEvent(Decision.APPROVED, nonce="n1", mailbox_digest="d1")
    assert not plan.accepts(unsigned, nonce="n1", mode=ConsentMode.GRANT, digest="d1")


def test_outcome_is_success_only_when_every_mailbox_is_verified():
    assert plan.outcome_for({"verified": 3}) is Outcome.SUCCEEDED
    assert plan.outcome_for({"verified": 2, "not_found": 1}) is Outcome.PARTIAL
    assert plan.outcome_for({"verified": 0}) is Outcome.PARTIAL
    assert plan.outcome_for({}) is Outcome.PARTIAL
    assert plan.count_states(["verified", "not_found", "verified"]) == {"verified": 2, "not_found": 1}


def test_batch_counts_merge_into_the_onboarding_counts():
    merged = plan.merge_counts([{"verified": 200}, {"verified": 150, "not_found": 2}, {}])
    assert merged == {"verified": 350, "not_found": 2}


def test_decision_events_decode_from_json_text_as_the_extension_delivers_them():
    sent = DecisionEvent(Decision.APPROVED, nonce="n1")
    assert DecisionEvent.from_event(sent.to_json()) == sent
    assert DecisionEvent.from_event('{"decision": "approved", "nonce": "n1"}') == sent
    for junk in ("not json", '"a string"', '{"decision": "maybe", "nonce": "n"}', None, 42):
        assert DecisionEvent.from_event(junk) is None


def tree(count: int, fanout: int) -> tuple[int, int, list[int]]:
    """Walk the tree ``plan.groups`` builds: (most children of any node, depth, the leaves' batch
    indices in order)."""
    most, depth, leaves = 0, 0, []
    level = [(0, count)]
    while level:
        depth += 1
        below = []
        for start, stop in level:
            spans = plan.groups(stop - start, fanout)
            most = max(most, len(spans))
            for a, b in spans:
                if b - a == 1:
                    leaves.append(start + a)
                else:
                    below.append((start + a, start + b))
        level = below
    return most, depth, sorted(leaves)


@given(count=st.integers(0, 3000), fanout=st.integers(2, 40))
def test_batch_groups_cover_every_batch_once_with_no_node_over_the_fanout(count: int, fanout: int):
    spans = plan.groups(count, fanout)
    assert [a for a, _ in spans[1:]] == [b for _, b in spans[:-1]]  # contiguous
    if count:
        assert spans[0][0] == 0 and spans[-1][1] == count
        sizes = [b - a for a, b in spans]
        assert max(sizes) - min(sizes) <= 1
    most, depth, leaves = tree(count, fanout)
    assert leaves == list(range(count))
    assert most <= fanout
    assert count <= fanout or depth >= 2


def test_ten_thousand_mailboxes_in_batches_of_200_are_five_groups_of_ten():
    assert plan.groups(50, 10) == [(0, 10), (10, 20), (20, 30), (30, 40), (40, 50)]
    assert plan.groups(3, 10) == [(0, 1), (1, 2), (2, 3)]
    assert tree(100_000 // 200, 10)[:2] == (10, 3)  # 500 batches: 10 groups of 5 groups of 10
