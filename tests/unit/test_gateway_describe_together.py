"""Describes read together in one composite call: a companion's failure never fails the object asked for."""

from __future__ import annotations

import pytest

from workers.salesforce.errors import SalesforceError
from workers.salesforce.gateway import SalesforceGateway

TASK = {"name": "Task", "createable": True, "fields": [{"name": "Subject"}]}


class CompositeOnly:
    """Answers composite describe calls with the given status per object (the org's object list: Task, EmailMessage)."""

    sf_version = "59.0"
    session = None

    def __init__(self, statuses: dict[str, int]):
        self.statuses = statuses
        self.requests: list[list[str]] = []

    def restful(self, path, method="GET", json=None):
        assert path == "composite/" and method == "POST"
        subrequests = json["compositeRequest"]
        self.requests.append([s["url"] for s in subrequests])
        replies = []
        for sub in subrequests:
            name = sub["url"].split("/sobjects/")[1].split("/")[0]
            if not name:
                body, status = {"sobjects": [{"name": "Task"}, {"name": "EmailMessage"}]}, 200
            else:
                status = self.statuses.get(name, 200)
                body = {**TASK, "name": name} if status == 200 else [{"errorCode": "UNKNOWN_EXCEPTION", "message": "x"}]
            replies.append({"referenceId": sub["referenceId"], "httpStatusCode": status, "body": body})
        return {"compositeResponse": replies}


def test_given_the_companion_fails_when_task_is_described_then_task_is_known_and_the_companion_asked_again():
    sf = CompositeOnly({"EmailMessage": 500})
    gateway = SalesforceGateway(sf)

    assert "Subject" in gateway.fields("Task")
    sf.statuses = {}
    assert gateway.is_createable("EmailMessage")
    # the object list, Task and its companions (EmailMessage, Lead); then EmailMessage alone
    assert len(sf.requests) == 2 and len(sf.requests[0]) == 4 and len(sf.requests[1]) == 1


def test_given_the_object_asked_for_fails_when_described_then_its_error_is_raised():
    gateway = SalesforceGateway(CompositeOnly({"Task": 500}))

    with pytest.raises(SalesforceError) as caught:
        gateway.fields("Task")

    assert caught.value.code == "UNKNOWN_EXCEPTION"
