"""The examples of docs/events.md, published to a real worker, land in Salesforce as the page says."""

from __future__ import annotations

import copy

import pytest

from tests.unit.test_events_doc import doc_section, json_blocks

pytestmark = pytest.mark.integration


def test_given_the_documented_examples_when_published_then_each_lands_as_documented(stack):
    automated, manual, reply, update = json_blocks(doc_section("## Examples"))
    [jane] = stack.admin.seed("Contact", [{"FirstName": "Jane", "LastName": "Doe", "Email": "jane.doe@acme.example"}])
    [riley] = stack.admin.seed("User", [{"Username": "riley@seller.example.sf", "Email": "riley@seller.example",
                                         "LastName": "Rep"}])
    manual = copy.deepcopy(manual)
    manual["data"]["rep"]["salesforce_user_id"] = riley  # the example's User id does not exist in the emulator
    stack.start_worker()

    stack.publish([automated, manual, reply, update])
    out = stack.wait_outcomes([e["id"] for e in (automated, manual, reply, update)])

    assert {o["outcome"] for o in out.values()} == {"written"}, out
    assert (out[automated["id"]]["sobject"], out[automated["id"]]["contact_id"]) == ("EmailMessage", jane)
    assert (out[reply["id"]]["sobject"], out[reply["id"]]["contact_id"]) == ("EmailMessage", jane)
    assert stack.admin.get("EmailMessage", out[reply["id"]]["record_id"])["Incoming"] is True
    task = stack.admin.get("Task", out[manual["id"]]["record_id"])
    lee = stack.admin.get("Contact", out[manual["id"]]["contact_id"])
    assert out[manual["id"]]["sobject"] == "Task" and task["OwnerId"] == riley
    assert (lee["FirstName"], lee["LastName"], lee["Email"]) == ("Lee", "Chen", "lee.chen@newco.example")
    updated = stack.admin.get("Contact", jane)
    assert updated["Title"] == "Chief Revenue Officer"
    assert updated["Unify_Sequence_Status__c"] == "Finished"
