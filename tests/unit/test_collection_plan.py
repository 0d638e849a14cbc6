"""Planning composite/sobjects calls: records grouped by type, at most 200 records and 10 type runs a call."""

from __future__ import annotations

import itertools

import pytest

from workers.salesforce.gateway import (
    COLLECTION_CHUNK_LIMIT,
    COLLECTION_LIMIT,
    in_given_order,
    plan_collection_requests,
)


def type_runs(types: list[str], positions: list[int]) -> list[str]:
    """The chunks Salesforce would process a request in: one per run of the same type."""
    return [sobject for sobject, _ in itertools.groupby(types[p] for p in positions)]


def assert_every_position_once(plan: list[list[int]], count: int) -> None:
    assert sorted(p for request in plan for p in request) == list(range(count))


def test_given_200_interleaved_records_of_3_types_when_planned_then_one_call_of_3_chunks():
    types = [("Task", "EmailMessage", "Contact")[i % 3] for i in range(200)]

    plan = plan_collection_requests(types)

    assert len(plan) == 1
    assert type_runs(types, plan[0]) == ["Task", "EmailMessage", "Contact"]
    assert_every_position_once(plan, 200)


def test_given_250_records_when_planned_then_two_calls_within_200_records():
    types = [("Task", "EmailMessage")[i % 2] for i in range(250)]

    plan = plan_collection_requests(types)

    assert [len(request) for request in plan] == [200, 50]
    assert all(len(type_runs(types, request)) <= 2 for request in plan)
    assert_every_position_once(plan, 250)


def test_given_12_records_alternating_task_and_email_message_when_planned_then_one_call_of_2_chunks():
    types = ["Task", "EmailMessage"] * 6

    plan = plan_collection_requests(types)

    assert len(plan) == 1
    assert type_runs(types, plan[0]) == ["Task", "EmailMessage"]


def test_given_12_types_when_planned_then_no_call_has_more_than_10_chunks():
    names = [f"Type{n}__c" for n in range(12)]
    types = [names[i % 12] for i in range(36)]

    plan = plan_collection_requests(types)

    assert len(plan) == 2
    assert [len(type_runs(types, request)) for request in plan] == [COLLECTION_CHUNK_LIMIT, 2]
    assert_every_position_once(plan, 36)


def test_given_a_type_split_across_calls_when_planned_then_each_part_counts_as_a_chunk():
    # 150 Tasks, then 100 EmailMessages: the second call starts with the EmailMessages left over
    types = ["Task"] * 150 + ["EmailMessage"] * 100

    plan = plan_collection_requests(types, max_records=COLLECTION_LIMIT, max_chunks=2)

    assert [type_runs(types, request) for request in plan] == [["Task", "EmailMessage"], ["EmailMessage"]]
    assert [len(request) for request in plan] == [200, 50]


def test_given_interleaved_records_when_planned_then_each_type_keeps_its_given_order():
    types = ["Task", "EmailMessage", "Task", "Contact", "EmailMessage", "Task"]

    plan = plan_collection_requests(types)

    assert plan == [[0, 2, 5, 1, 4, 3]]


def test_given_answers_in_plan_order_when_put_back_then_the_callers_order_returns():
    types = [("Task", "EmailMessage", "Contact", "Lead")[(i * 7) % 4] for i in range(450)]
    plan = plan_collection_requests(types, max_chunks=3)
    answers = [[f"answer for {p}" for p in request] for request in plan]  # Salesforce keeps request order

    restored = in_given_order(plan, answers)

    assert restored == [f"answer for {p}" for p in range(450)]
    assert len(plan) > 2
    assert all(len(request) <= COLLECTION_LIMIT and len(type_runs(types, request)) <= 3 for request in plan)


def test_given_a_call_answering_fewer_records_than_sent_when_put_back_then_it_is_refused():
    with pytest.raises(ValueError):
        in_given_order([[1, 0]], [["only one answer"]])


def test_given_no_records_when_planned_then_no_call():
    assert plan_collection_requests([]) == []
