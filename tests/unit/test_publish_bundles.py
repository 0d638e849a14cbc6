"""publish_many bundles events per queue and workspace, in order, bounded in count and bytes."""

from __future__ import annotations

from events.publish import bundles
from schemas.events import parse_event
from tests.factories import email_event


def test_given_a_mixed_burst_when_bundled_then_per_queue_in_order_and_capped():
    events = [parse_event(email_event(event_type="email.replied" if n % 4 == 0 else "email.sent",
                                      event_id=f"evt_{n}")) for n in range(120)]

    out = bundles(events, max_events=50)

    by_queue: dict[str, list[str]] = {}
    for _, queue, evs, bodies in out:
        assert len(evs) == len(bodies) <= 50
        by_queue.setdefault(queue, []).extend(e.id for e in evs)
    assert by_queue["email.sent"] == [f"evt_{n}" for n in range(120) if n % 4]
    assert by_queue["email.replied"] == [f"evt_{n}" for n in range(120) if n % 4 == 0]
    assert [len(evs) for _, q, evs, _ in out if q == "email.sent"] == [50, 40]


def test_given_a_large_event_when_bundled_then_the_byte_cap_splits_the_bundle():
    small = [parse_event(email_event()) for _ in range(3)]
    large = parse_event(email_event(body_html="<p>" + "x" * 300_000 + "</p>"))

    out = bundles([small[0], large, small[1], small[2]], max_bytes=256 * 1024)

    assert [[e.id for e in evs] for _, _, evs, _ in out] == [[small[0].id], [large.id], [small[1].id, small[2].id]]


def test_given_events_of_two_workspaces_when_bundled_then_no_message_mixes_them_and_each_names_its_own():
    from events.publish import message_headers

    events = [parse_event(email_event(workspace_id="ws_a" if n % 2 else "ws_b", event_id=f"evt_{n}"))
              for n in range(12)]

    out = bundles(events)

    assert all(len({e.workspace_id for e in evs}) == 1 for _, _, evs, _ in out)
    assert [[e.id for e in evs] for _, _, evs, _ in out] == [
        [f"evt_{n}" for n in range(0, 10, 2)], [f"evt_{n}" for n in range(1, 11, 2)], ["evt_10"], ["evt_11"]]
    assert [message_headers(evs) for _, _, evs, _ in out][:2] == [
        {"sfsync_events": 5, "sfsync_workspace": "ws_b"}, {"sfsync_events": 5, "sfsync_workspace": "ws_a"}]


def test_given_replicas_with_a_zero_timeout_when_publishing_then_it_is_refused_before_connecting():
    import pytest

    from events.publish import publish_many

    # WAIT with timeout 0 blocks for ever; the URL points nowhere, so reaching Redis would fail differently
    with pytest.raises(ValueError, match="replica_timeout_ms > 0"):
        publish_many([email_event()], broker_url="redis://127.0.0.1:1/0", replicas=1, replica_timeout_ms=0)
