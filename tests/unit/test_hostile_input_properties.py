"""Property tests: event parsing and the envelope and message checks refuse any input with a reason, never crash."""

from __future__ import annotations

import base64
import json
import pickle
import time

import pytest
from hypothesis import HealthCheck, assume, example, given, settings
from hypothesis import strategies as st
from kombu.message import Message
from kombu.exceptions import DecodeError
from kombu.serialization import loads as kombu_loads
from kombu.transport.virtual.base import Message as KombuMessage

from events.deadletter import dead_letter_id, raw_for_storage
from schemas.codes import ErrorCode
from schemas.deadletter import DeadLetterRecord
from schemas.events import (
    MAX_EVENT_DEPTH,
    InvalidEvent,
    _shape_ok,
    event_to_json,
    nesting_depth,
    parse_event,
    shape_summary,
)
from tests.factories import contact_updated_event, email_event
from tests.hostile_items import (
    ENVELOPE_CORRUPTIONS, MISSING, corrupted, deep_json_text, nested, task_envelope, with_body)
from workers.broker_guard import envelope_problem, readable_ids
from workers.cli import exits
from workers.consumer.batches import QueuedMessage, events_carried, kombu_may_differ, no_lone_surrogate, packable
from workers.consumer_guard import _message_ids, check_message, inspect_message
from workers.messages import _items

#: codes parse_event may give; anything else is a bug in it
EVENT_CODES = {"INVALID_EVENT", "INVALID_JSON", "EVENT_TOO_LARGE", "UNKNOWN_EVENT_TYPE"}
SURROGATES = st.sampled_from(["\ud800", "\udfff", "\udc80", "a\ud83d", "\ud83dz"])

texts = st.one_of(st.text(max_size=20), SURROGATES, st.builds(lambda a, s, b: a + s + b, st.text(max_size=5),
                                                              SURROGATES, st.text(max_size=5)))
scalars = st.one_of(st.none(), st.booleans(), st.integers(), st.floats(allow_nan=True), texts)
json_ish = st.recursive(scalars, lambda inner: st.one_of(st.lists(inner, max_size=4),
                                                         st.dictionaries(texts, inner, max_size=4)), max_leaves=20)
deep_values = st.builds(nested, st.integers(min_value=MAX_EVENT_DEPTH - 2, max_value=3000))
hostile_values = st.one_of(json_ish, deep_values, st.builds(lambda n: "x" * n, st.integers(0, 3_000_000)))


def event_paths(value, prefix=()):
    """Every path in a JSON value, containers and leaves alike."""
    yield prefix
    if isinstance(value, dict):
        for name, child in value.items():
            yield from event_paths(child, (*prefix, name))
    elif isinstance(value, list):
        for n, child in enumerate(value):
            yield from event_paths(child, (*prefix, n))


def replaced(value, path, new):
    if not path:
        return new
    out = dict(value) if isinstance(value, dict) else list(value)
    out[path[0]] = replaced(value[path[0]], path[1:], new)
    return out


def valid_events():
    return st.sampled_from([email_event(), email_event(event_type="email.replied"),
                            contact_updated_event(emails=["jane.doe@acme.example"], changes={"title": "CFO"})])


@st.composite
def events_with_one_path_corrupted(draw):
    event = draw(valid_events())
    path = draw(st.sampled_from(list(event_paths(event))))
    return replaced(event, path, draw(hostile_values))


def assert_storable(event) -> None:
    """An accepted event can be written anywhere: UTF-8 JSON, within the depth limit."""
    dumped = event_to_json(event)
    json.dumps(dumped, ensure_ascii=False).encode("utf-8")
    assert nesting_depth(dumped) <= MAX_EVENT_DEPTH


def assert_a_storable_refusal(problem: InvalidEvent) -> None:
    assert problem.code in EVENT_CODES
    assert isinstance(problem.reason, str) and problem.reason.strip()
    # every refusal must be writable to Redis, the dead-letter store and a UTF-8 log line
    for text in (problem.reason, problem.event_id, problem.event_type, problem.workspace_id):
        if text is not None:
            text.encode("utf-8")


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.large_base_example])
@given(events_with_one_path_corrupted())
def test_given_a_valid_event_with_any_path_corrupted_when_parsed_then_an_event_or_a_storable_refusal(raw):
    try:
        event = parse_event(raw)
    except InvalidEvent as problem:
        assert_a_storable_refusal(problem)
    else:
        assert_storable(event)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.one_of(hostile_values, st.builds(json.dumps, json_ish), st.binary(max_size=200)))
def test_given_arbitrary_json_ish_input_when_parsed_then_only_invalid_event_is_raised(raw):
    try:
        event = parse_event(raw)
    except InvalidEvent as problem:
        assert_a_storable_refusal(problem)
    else:
        assert_storable(event)


@settings(max_examples=200, deadline=None)
@given(valid_events(), st.sampled_from(["id", "data.subject", "data.body_html", "data.person.first_name",
                                        "data.changes.title", "workspace_id"]), SURROGATES,
       st.integers(min_value=0, max_value=10))
def test_given_a_lone_surrogate_anywhere_in_an_event_when_parsed_then_refused_with_its_path(event, where, bad, at):
    path = tuple(where.split("."))
    node = event
    for name in path[:-1]:
        node = node.get(name) if isinstance(node, dict) else None
    if not isinstance(node, dict) or path[-1] not in node:
        return  # this event type has no such field
    text = ("valid text" * 2)[:at]
    with pytest.raises(InvalidEvent) as caught:
        parse_event(replaced(event, path, text + bad))
    assert caught.value.code == "INVALID_EVENT"
    assert caught.value.reason.startswith(f"{where}: contains a lone UTF-16 surrogate")
    assert "events must be valid Unicode" in caught.value.reason
    assert_a_storable_refusal(caught.value)


@settings(max_examples=50, deadline=None)
@given(st.integers(min_value=MAX_EVENT_DEPTH, max_value=5000), st.booleans())
def test_given_an_event_nested_past_the_limit_when_parsed_then_refused_naming_the_limit(depth, as_text):
    event = email_event()
    event["data"]["extra"] = "DEEP"
    # as text, written by hand: Python's own JSON encoder cannot write it past ~1,000 levels
    text = json.dumps(event).replace('"DEEP"', deep_json_text(depth))
    event["data"]["extra"] = nested(depth)
    with pytest.raises(InvalidEvent) as caught:
        parse_event(text if as_text else event)
    assert f"nested deeper than {MAX_EVENT_DEPTH} levels" in caught.value.reason


@pytest.mark.parametrize("version", [True, False, 1.0, "1", 2, None])
def test_given_a_version_that_is_not_the_integer_1_when_parsed_then_refused_naming_version(version):
    event = {**email_event(), "version": version}
    with pytest.raises(InvalidEvent) as caught:
        parse_event(event)
    assert caught.value.reason.startswith("version:")


# --- the envelope and message checks ------------------------------------------------------

class FakeChannel:
    """What kombu's virtual Message reads of its channel."""

    def decode_body(self, body, encoding=None):
        if encoding and encoding.lower() != "utf-8":
            return base64.b64decode(body, validate=True)
        return body


envelope_paths = st.sampled_from(sorted({path for path, _, _ in ENVELOPE_CORRUPTIONS} | {
    ("properties", "correlation_id"), ("properties", "reply_to"), ("headers", "root_id"), ("headers", "shadow"),
    ("headers", "argsrepr"), ("headers", "expires"), ("headers", "lang")}))


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(envelope_paths, st.one_of(hostile_values, st.just(MISSING)))
def test_given_an_envelope_with_any_path_corrupted_when_checked_then_refused_or_usable_by_kombu(path, value):
    payload = corrupted(task_envelope([email_event()]), path, value)

    problem = envelope_problem(payload, FakeChannel().decode_body)
    readable_ids(payload)  # never raises, whatever it is given

    if problem is not None:
        assert isinstance(problem, str) and problem.strip()
        problem.encode("utf-8")
        return
    # accepted: everything kombu's Redis QoS and Celery's consumer read must be there and usable
    message = KombuMessage(payload, channel=FakeChannel())
    info = message.delivery_info
    assert isinstance(info["exchange"], str) and isinstance(info["routing_key"], str)
    assert isinstance(message.delivery_tag, (str, int)) and not isinstance(message.delivery_tag, bool)
    json.dumps([payload, info["exchange"], info["routing_key"]])
    assert isinstance(message.headers, dict) and isinstance(message.headers["task"], str)


class DecodedMessage:
    """A kombu message whose body decodes to `payload` (what check_message reads).

    The payload is given, not decoded from `body` (it may hold what no UTF-8 JSON body decodes to),
    so the body is not one the consumer may read as UTF-8 JSON (content encoding "binary"): every
    argument is walked for depth and text alike."""

    def __init__(self, payload, body: bytes = b"[]"):
        self.body = body
        self._payload = payload
        self.content_type = "application/json"
        self.content_encoding = "binary"
        self.headers = {"id": "t-1", "task": "sfsync.email.sent"}

    def decode(self):
        if isinstance(self._payload, Exception):
            raise self._payload
        return self._payload


protocol_bodies = st.one_of(
    json_ish,
    st.builds(lambda args, kwargs: [args, kwargs, {}], st.lists(hostile_values, max_size=3),
              st.dictionaries(st.text(max_size=5), hostile_values, max_size=2)),
    st.builds(lambda d: [[nested(d)], {}, {}], st.integers(0, 3000)),
    st.builds(lambda d: [[email_event()], {"sfsync": nested(d)}, {}], st.integers(0, 3000)),
    st.just(RecursionError("maximum recursion depth exceeded while decoding a JSON array")),
)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(protocol_bodies)
def test_given_any_decoded_body_when_checked_then_refused_with_a_reason_or_shallow_enough_for_a_worker(payload):
    message = DecodedMessage(payload)

    problem = check_message(message)
    ids = _message_ids(message, payload if not isinstance(payload, Exception) else None)

    for value in ids.values():
        if value is not None:
            value.encode("utf-8")
    if problem is not None:
        code, reason, _ = problem
        assert code and reason.strip()
        return
    # accepted: a pool process can be handed it (pickle recurses once per level)
    import pickle

    pickle.dumps(payload)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.one_of(hostile_values, st.binary(max_size=300), st.builds(deep_json_text, st.integers(0, 5000))),
       st.one_of(st.none(), texts), st.one_of(st.none(), texts))
def test_given_any_raw_item_when_stored_as_a_dead_letter_then_it_is_written_and_read_back(raw, event_id, workspace):
    from datetime import datetime, timezone

    from schemas.events import escape_surrogates

    kept, _ = raw_for_storage(raw)
    record_id = dead_letter_id(workspace, event_id)
    now = datetime.now(timezone.utc)
    safe = [escape_surrogates(v) if isinstance(v, str) else v for v in (event_id, workspace)]
    record = DeadLetterRecord(id=record_id, event_id=safe[0], workspace_id=safe[1], event=kept, error_code="X",
                              error_message="why", first_failure_at=now, last_failure_at=now, sfsync_version="0")

    assert DeadLetterRecord.model_validate_json(record.model_dump_json()).id == record_id


def test_given_a_huge_event_when_parsed_then_refused_quickly_by_size():
    started = time.monotonic()
    with pytest.raises(InvalidEvent) as caught:
        parse_event(json.dumps({**email_event(), "pad": "x" * 3_000_000}))
    assert caught.value.code == "EVENT_TOO_LARGE" and time.monotonic() - started < 1.0


def test_given_envelope_corruptions_when_checked_then_each_refusal_names_its_field():
    envelope = task_envelope([email_event()])
    for path, value, expected in ENVELOPE_CORRUPTIONS:
        if path == ("content-type",) and isinstance(value, str):
            continue  # well-formed envelopes: Celery's own checks refuse these, after the envelope check
        if path == ("headers", "task") and isinstance(value, str):
            continue  # a string task name is a valid envelope; the queue decides (see task_problem)
        problem = envelope_problem(corrupted(envelope, path, value), FakeChannel().decode_body)
        assert problem is not None and expected in problem, (path, value, problem)


def test_given_a_bundle_with_a_deep_event_when_checked_then_the_whole_message_is_refused_naming_args():
    payload = [[[email_event(), nested(500)]], {}, {}]
    code, reason, _ = check_message(DecodedMessage(payload))
    assert code == "INVALID_EVENT" and reason.startswith("args[0]: nested deeper than")


def test_given_body_missing_from_a_readable_envelope_when_ids_read_then_the_event_ids_come_from_the_body():
    event = email_event()
    payload = corrupted(with_body(task_envelope([]), json.dumps([[event], {}, {}]).encode()),
                        ("properties", "delivery_info"), MISSING)
    ids, task_name, task_id, _ = readable_ids(payload)
    assert ids == {"event_id": event["id"], "event_type": "email.sent", "workspace_id": "ws_acme"}
    assert task_name == "sfsync.email.sent" and task_id


# --- the publish side refuses what the worker would refuse ----------------------------------

@pytest.mark.parametrize("depth", [900, 100_000])
def test_given_an_event_nested_900_deep_when_published_from_the_cli_then_its_line_is_rejected_without_traceback(
        tmp_path, depth):
    from click.testing import CliRunner

    from workers.cli import main as cli

    deep = email_event()
    deep["data"]["extra"] = "DEEP"
    source = tmp_path / "events.jsonl"
    source.write_text(json.dumps(email_event()) + "\n" + json.dumps(deep).replace('"DEEP"', deep_json_text(depth))
                      + "\n")

    result = CliRunner().invoke(cli, ["publish", str(source)], env={"SFSYNC_REDIS_URL": "redis://127.0.0.1:1/0"})

    assert result.exit_code == exits.DATA and isinstance(result.exception, (SystemExit, type(None))), result.exception
    assert "Traceback" not in result.output
    assert "line 2: INVALID_" in result.output and f"nested deeper than {MAX_EVENT_DEPTH} levels" in result.output
    assert "nothing published" in result.output


def test_given_an_event_model_with_a_lone_surrogate_when_published_then_refused_before_anything_is_sent():
    from events.publish import PublishError, publish_many

    event = parse_event(email_event())
    bad = event.model_copy(update={"data": event.data.model_copy(update={"subject": "x\ud800"})})

    with pytest.raises(PublishError) as caught:
        publish_many([event, bad], broker_url="redis://127.0.0.1:1/0")  # nothing listens there: nothing is sent

    [(index, problem)] = caught.value.problems
    assert index == 1 and problem.reason.startswith("data.subject: contains a lone UTF-16 surrogate")


@pytest.mark.parametrize("depth", [MAX_EVENT_DEPTH + 1, 900])
def test_given_an_event_model_nested_too_deep_when_published_then_refused_naming_the_depth(depth):
    from events.publish import PublishError, publish_many

    event = parse_event(email_event())
    deep = event.model_copy(update={"data": event.data.model_copy(update={"extra": nested(depth)})})

    with pytest.raises(PublishError) as caught:
        publish_many([deep], broker_url="redis://127.0.0.1:1/0")

    [(_, problem)] = caught.value.problems
    assert f"nested deeper than {MAX_EVENT_DEPTH} levels" in problem.reason and problem.event_id == event.id


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.one_of(json_ish, deep_values, st.lists(st.one_of(json_ish, deep_values), max_size=3)))
def test_given_any_value_when_its_shape_is_summarised_then_depth_and_text_agree_with_the_separate_walks(value):
    depth, text_ok = shape_summary(value, 2 * MAX_EVENT_DEPTH)

    assert depth == nesting_depth(value, 2 * MAX_EVENT_DEPTH)
    if depth <= 2 * MAX_EVENT_DEPTH:
        assert text_ok == all_text_valid(value)
    else:  # stopped early: it vouches for nothing
        assert not text_ok
    assert _shape_ok(value) == (depth <= MAX_EVENT_DEPTH and all_text_valid(value))


def all_text_valid(value) -> bool:
    """Every string in `value`, keys included, is valid Unicode (the plain way, for comparison)."""
    stack = [value]
    while stack:
        node = stack.pop()
        if isinstance(node, str):
            try:
                node.encode("utf-8")
            except UnicodeEncodeError:
                return False
        elif isinstance(node, dict):
            stack.extend(node.keys())
            stack.extend(node.values())
        elif isinstance(node, (list, tuple)):
            stack.extend(node)
    return True


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(events_with_one_path_corrupted(), st.booleans(), st.booleans())
def test_given_any_message_when_the_consumer_vouches_for_its_shape_then_the_pool_decides_as_if_it_walked_it(
        event, bundled, as_text):
    # the consumer's walk decides whether a pool process walks an event again: whatever it vouches
    # for must be refused or accepted exactly as the pool's own walk would
    if as_text:
        try:
            argument = json.dumps(event)
        except (RecursionError, ValueError):  # too deep or not JSON: no emitter could send it as text
            assume(False)
    else:
        argument = event
    payload = [[[argument] if bundled else argument], {}, {}]
    problem, checked = inspect_message(DecodedMessage(payload))
    if problem is not None:
        assert not checked
        return
    for part in [argument]:
        try:
            walked = event_to_json(parse_event(part))
        except InvalidEvent as exc:
            walked = exc.reason
        try:
            trusted = event_to_json(parse_event(part, shape_checked=checked))
        except InvalidEvent as exc:
            trusted = exc.reason
        assert trusted == walked


def test_given_messages_of_every_kind_when_inspected_then_only_event_objects_within_bounds_are_vouched_for():
    good = email_event()
    deep = email_event()
    deep["data"]["extra"] = nested(MAX_EVENT_DEPTH)
    bad_text = email_event()
    bad_text["data"]["subject"] = "a\ud800b"
    bad_key = email_event()
    bad_key["data"]["\udc80"] = 1

    def vouched(args) -> bool:
        problem, checked = inspect_message(DecodedMessage([args, {}, {}]))
        assert problem is None
        return checked

    assert vouched([good]) and vouched([[good, good]])
    assert not vouched([json.dumps(good)])  # JSON text is decoded, then walked, in the pool
    assert not vouched([deep]) and not vouched([bad_text]) and not vouched([bad_key])
    assert not vouched([good, bad_text])


def _pool_reading(request) -> list:
    """What a pool process makes of a message: each event's JSON, or the reason it is refused."""
    return [event_to_json(item.event) if item.event is not None else (item.problem.code, item.problem.reason)
            for item in _items(request, "sfsync.email.sent", "email.sent")]


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(events_with_one_path_corrupted(), st.booleans())
def test_given_any_message_held_packed_when_a_pool_process_unpacks_it_then_it_reads_what_was_decoded_on_arrival(
        event, bundled):
    # the consumer holds a message as the bytes it came in and the pool decodes them again: the
    # pool must end with exactly what the consumer decoded, vouched for or not
    try:
        body = json.dumps([[[event] if bundled else event], {}, {}]).encode()
    except (RecursionError, ValueError):  # too deep or not JSON: no emitter could send it
        assume(False)
    message = Message(body=body, content_type="application/json", content_encoding="utf-8",
                      headers={"id": "t-1", "task": "sfsync.email.sent"}, accept=["application/json"])
    problem, checked = inspect_message(message)
    if problem is not None:
        return
    args = message.decode()[0]
    held = QueuedMessage("t-1", (), {}, packed=packable(message), shape_checked=checked, events=events_carried(args))
    decoded = QueuedMessage("t-1", tuple(args), {})
    assert held.packed is body
    assert _pool_reading(pickle.loads(pickle.dumps(held))) == _pool_reading(decoded)  # noqa: S301 - pickled here


def test_given_a_packed_body_the_pool_cannot_decode_when_read_then_it_is_refused_with_its_text():
    held = QueuedMessage("t-1", (), {}, packed=b'[["\xff not json')
    [(code, reason)] = _pool_reading(held)
    assert code == ErrorCode.UNDECODABLE_MESSAGE and reason.startswith("cannot decode the message body")
    [item] = _items(held, "sfsync.email.sent", "email.sent")
    assert "not json" in item.raw


def test_given_messages_of_every_encoding_when_taken_in_then_only_json_bytes_are_held_packed():
    def packed(**fields):
        defaults = {"body": b"[[], {}, {}]", "content_type": "application/json", "content_encoding": "utf-8"}
        return packable(Message(**{**defaults, **fields}, headers={"id": "t-1"}))

    assert packed() == b"[[], {}, {}]" and packed(content_encoding="UTF-8") is not None
    assert packed(content_type="application/x-python-serialize") is None
    assert packed(content_encoding="binary") is None
    assert packed(body="[[], {}, {}]") is None  # text, not bytes: decoded differently


@pytest.mark.parametrize("extra", [
    '{"__type__": "datetime", "__value__": "2026-12-06T08:00:00"}',  # kombu makes a datetime of it
    '{"\\u005f_type__": "bytes", "__value__": "abc"}',  # the same key spelt with an escape
    '{"__type__": "no such type", "__value__": 1}',  # kombu refuses the whole body
    '{"note": "J\\u00fcrgen \\ud83d\\ude00 __type__"}',  # escapes and the word in text: decoded as JSON
])
def test_given_a_body_kombu_decodes_its_own_way_when_unpacked_then_the_pool_reads_what_kombu_read(extra):
    event = json.dumps(email_event())
    body = f'[[{event[:-1]}, "extra": {extra}}}], {{}}, {{}}]'.encode()
    message = Message(body=body, content_type="application/json", content_encoding="utf-8",
                      headers={"id": "t-1", "task": "sfsync.email.sent"}, accept=["application/json"])
    held = QueuedMessage("t-1", (), {}, packed=packable(message))
    try:
        decoded = message.decode()[0]
    except Exception as exc:  # noqa: BLE001 - whatever kombu raises, the pool must refuse it too
        [(code, _)] = _pool_reading(held)
        assert code == ErrorCode.UNDECODABLE_MESSAGE, exc
        return
    assert held.arguments() == tuple(decoded)
    assert _pool_reading(held) == _pool_reading(QueuedMessage("t-1", tuple(decoded), {}))


_KEYS = st.one_of(st.sampled_from(["__type__", "__value__", "type", "value", "_"]), st.text(max_size=8))
_JSON_VALUES = st.recursive(
    st.one_of(st.none(), st.booleans(), st.integers(), st.text(max_size=12),
              st.sampled_from(["datetime", "bytes", "base64", "2026-12-06T08:00:00", "__type__"])),
    lambda children: st.one_of(st.lists(children, max_size=4), st.dictionaries(_KEYS, children, max_size=4)),
    max_leaves=20)


@settings(max_examples=500, deadline=None)
@given(_JSON_VALUES, st.booleans(), st.sampled_from(["", "_", "t", "e", "a"]))
@example({"__type__": "bytes", "__value__": "x"}, True, "e")
@example({"__type__": "bytes", "__value__": "x"}, True, "t")
@example({"__type__": "bytes", "__value__": "x"}, False, "_")
@example({"__type__": "datetime", "__value__": "2026-12-06T08:00:00"}, True, "")
def test_given_any_json_when_kombu_cannot_differ_then_plain_json_decodes_it_as_kombu_does(value, ascii_only, spelt):
    text = json.dumps([[value], {}, {}], ensure_ascii=ascii_only)
    if spelt:  # a letter written as an escape, as no encoder does but a hostile emitter may
        text = text.replace(spelt, "\\u%04x" % ord(spelt)) if spelt != "a" else text.replace('"', '"\\u0061', 1)
    body = text.encode("utf-8")

    def reading(decode) -> object:
        try:
            return decode()
        except Exception as exc:  # noqa: BLE001 - not JSON any more, or a marker kombu does not know
            return type(exc)

    kombu_reading = reading(lambda: kombu_loads(body, "application/json", "utf-8", accept={"application/json"}))
    plain_reading = reading(lambda: json.loads(body.decode("utf-8")))
    if not kombu_may_differ(body):  # the same answer, or both refuse what is no longer JSON
        assert plain_reading == kombu_reading or (kombu_reading is DecodeError
                                                  and plain_reading is json.JSONDecodeError)


def plain_depth(value) -> int:
    """Levels of nested lists, tuples and dicts, the plain recursive way (for comparison; shallow values only)."""
    if isinstance(value, dict):
        return 1 + max((plain_depth(v) for v in value.values()), default=0)
    if isinstance(value, (list, tuple)):
        return 1 + max((plain_depth(v) for v in value), default=0)
    return 0


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.one_of(json_ish, st.builds(nested, st.integers(0, 200)),
                 st.lists(st.one_of(json_ish, st.tuples(json_ish, json_ish)), max_size=3).map(tuple)),
       st.integers(0, 80))
def test_given_any_value_when_its_depth_is_measured_then_the_plain_recursive_depth_capped_past_the_limit(value, limit):
    assert nesting_depth(value) == plain_depth(value)
    assert nesting_depth(value, limit) == min(plain_depth(value), limit + 1)


def _inspected(body: bytes) -> tuple:
    return inspect_message(Message(body=body, content_type="application/json", content_encoding="utf-8",
                                   headers={"id": "t-1", "task": "sfsync.email.sent"}, accept=["application/json"]))


def _walked(body: bytes) -> bool:
    """Whether the consumer's full walk (depth and text of every argument) vouches for a decodable body."""
    args = json.loads(body)[0]
    return all(isinstance(a, (dict, list)) and (s := shape_summary(a, 2 * MAX_EVENT_DEPTH))[1]
               and s[0] <= MAX_EVENT_DEPTH for a in args)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(events_with_one_path_corrupted(), st.booleans(), st.booleans())
def test_given_any_body_when_the_consumer_skips_the_text_walk_then_it_vouches_exactly_as_the_full_walk(
        event, bundled, ascii_only):
    # a body without a \ud escape is only walked for depth: it must vouch for exactly what the full
    # walk would, whether its JSON escapes non-ASCII text or carries it as UTF-8 (a lone surrogate
    # then written as its raw bytes, which no strict UTF-8 decoder reads)
    try:
        text = json.dumps([[[event] if bundled else event], {}, {}], ensure_ascii=ascii_only)
    except (RecursionError, ValueError):  # too deep or not JSON: no emitter could send it
        assume(False)
    body = text.encode("utf-8", "surrogatepass")
    problem, checked = _inspected(body)
    try:
        body.decode("utf-8")
    except UnicodeDecodeError:
        assert problem is not None and problem[0] == ErrorCode.UNDECODABLE_MESSAGE and not checked
        return
    if problem is None:
        assert checked == _walked(body)


@pytest.mark.parametrize(("subject", "vouched"), [
    (r"a\ud800b", False), (r"a\uD800b", False), (r"a\uDfFfb", False),  # lone surrogates, any case
    (r"\ud83d\ude00", True),  # a valid pair: walked, and vouched for
    (r"a\\ud800b", True),  # an escaped backslash, then the letters "ud800": plain text
    (r"a\u0064b", True), ("caf\u00e9 \u2603", True),  # escapes and UTF-8 of other characters
])
def test_given_a_subject_spelled_any_way_when_the_consumer_inspects_it_then_only_valid_unicode_is_vouched_for(
        subject, vouched):
    event = json.dumps(email_event()).replace('"subject": "', '"subject": "' + subject.replace('"', ""), 1)
    problem, checked = _inspected(f"[[{event}], {{}}, {{}}]".encode())
    assert problem is None and checked is vouched


def test_given_a_body_when_searched_for_surrogate_escapes_then_only_a_backslash_u_d_makes_it_walked():
    assert no_lone_surrogate(b'{"a": "caf\xc3\xa9 \\u00e9 \\\\ u d"}')
    assert not no_lone_surrogate(b'{"a": "\\ud800"}') and not no_lone_surrogate(b'{"a": "\\uDC00"}')
    assert not no_lone_surrogate(b'{"\\udbff": 1}')
