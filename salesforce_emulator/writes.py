"""Record writes (create, update, upsert, delete) with Salesforce's side effects and rollback."""
from __future__ import annotations

from typing import Any

from .catalog import CONVERTED_STATUS
from .errors import ApiError, not_found
from .validation import check_required, check_rules, check_values, converted_lead, resolve_fields

_NAMED = ("Contact", "Lead", "User")
_JUNCTIONS = {"ToIds": "ToAddress", "CcIds": "CcAddress", "BccIds": "BccAddress"}
_DRAFT = "5"


class Writer:
    """Writes on behalf of one actor; keeps an undo journal so allOrNone can roll back."""

    def __init__(self, org, *, actor_id: str | None = None, privileged: bool = False, rules: bool = True):
        self.org = org
        self.actor_id = actor_id or org.api_user_id
        self.privileged = privileged
        self.rules = rules
        self._journal: list[tuple[str, str, dict | None]] = []

    # transaction ---------------------------------------------------------------

    def _put(self, sobject: str, record: dict) -> None:
        previous = self.org.records[sobject].get(record["Id"])
        self._journal.append((sobject, record["Id"], None if previous is None else dict(previous)))
        self.org.put(sobject, record)

    def savepoint(self) -> int:
        return len(self._journal)

    def rollback(self, savepoint: int = 0) -> None:
        while len(self._journal) > savepoint:
            sobject, record_id, previous = self._journal.pop()
            if previous is None:
                self.org.drop(sobject, record_id)
            else:
                self.org.put(sobject, previous)

    # operations ----------------------------------------------------------------

    def sobject(self, name: str):
        obj = self.org.sobject(name)
        if obj is None:
            raise ApiError("INVALID_TYPE", f"sObject type '{name}' is not supported.", status=404)
        return obj

    def create(self, type_name: str, body: dict) -> str:
        """Create one record atomically (its side effects too) and return its id."""
        savepoint = self.savepoint()
        try:
            return self._create(type_name, body)
        except ApiError:
            self.rollback(savepoint)
            raise

    def _create(self, type_name: str, body: dict) -> str:
        sobject = self.sobject(type_name)
        values = resolve_fields(sobject, body, creating=True, privileged=self.privileged)
        check_values(self.org, sobject, values)
        junctions: dict[str, Any] = {name: values.pop(name) for name in list(values) if name in _JUNCTIONS}
        stamp = self.org.tick()
        record: dict[str, Any] = dict(sobject.blank)
        if "OwnerId" in sobject.fields:
            record["OwnerId"] = self.actor_id
        record.update(values)
        record.update(Id=self.org.new_id(sobject.name), IsDeleted=False, CreatedDate=stamp,
                      LastModifiedDate=stamp, SystemModstamp=stamp, CreatedById=self.actor_id,
                      LastModifiedById=self.actor_id)
        self._derive(sobject.name, record)
        self._check_record(sobject, record, None)
        self._put(sobject.name, record)
        if sobject.name == "EmailMessage":
            for field_name, relation_type in _JUNCTIONS.items():
                for target in junctions.get(field_name) or ():
                    self._relate(record, target, relation_type)
        if sobject.name == "EmailMessageRelation":
            message = self.org.records["EmailMessage"].get(record["EmailMessageId"])
            if message is not None and record["RelationId"]:
                self._ensure_task(message, record["RelationId"])
        return record["Id"]

    def update(self, type_name: str, record_id: str, body: dict) -> None:
        savepoint = self.savepoint()
        try:
            self._update(type_name, record_id, body)
        except ApiError:
            self.rollback(savepoint)
            raise

    def _update(self, type_name: str, record_id: str, body: dict) -> None:
        sobject = self.sobject(type_name)
        current = self.existing(sobject, record_id)
        if sobject.name == "Lead" and current.get("IsConverted"):
            raise converted_lead("cannot update a converted lead")
        values = resolve_fields(sobject, body, creating=False, privileged=self.privileged)
        values.pop("Id", None)
        check_values(self.org, sobject, values)
        junctions: dict[str, Any] = {name: values.pop(name) for name in list(values) if name in _JUNCTIONS}
        if sobject.name == "EmailMessage" and current["Status"] != _DRAFT and not self.privileged:
            # only drafts can be edited; custom fields stay editable on sent emails
            locked = [name for name in list(values) + list(junctions) if not name.endswith("__c")]
            if locked:
                raise ApiError("INSUFFICIENT_ACCESS_OR_READONLY", "insufficient access rights on object id",
                               locked)
        record = {**current, **values}
        stamp = self.org.tick()
        record.update(LastModifiedDate=stamp, SystemModstamp=stamp, LastModifiedById=self.actor_id)
        self._derive(sobject.name, record)
        self._check_record(sobject, record, current)
        self._put(sobject.name, record)
        if sobject.name == "EmailMessage":
            for field_name, relation_type in _JUNCTIONS.items():
                for target in junctions.get(field_name) or ():
                    self._relate(record, target, relation_type)

    def convert_lead(self, lead_id: str, *, contact_id: str | None = None, account_id: str | None = None,
                     converted_on: str | None = None) -> dict:
        """Convert a Lead as a person does in Salesforce: an Account (named after its Company) and a Contact
        are created from it unless existing ones are given, the Lead is marked converted and points at
        them, and its Tasks move to the Contact. Atomic: a failure leaves everything as it was."""
        savepoint = self.savepoint()
        try:
            return self._convert_lead(lead_id, contact_id, account_id, converted_on)
        except ApiError:
            self.rollback(savepoint)
            raise

    def _convert_lead(self, lead_id, contact_id, account_id, converted_on) -> dict:
        leads = self.sobject("Lead")
        lead = self.existing(leads, lead_id)
        if lead.get("IsConverted"):
            raise converted_lead("the lead is already converted")
        if account_id is not None:
            account_id = self.existing(self.sobject("Account"), account_id)["Id"]
        elif contact_id is None:
            account_id = self._create("Account", {"Name": lead["Company"]})
        if contact_id is not None:
            contact = self.existing(self.sobject("Contact"), contact_id)
            contact_id = contact["Id"]
            account_id = account_id or contact.get("AccountId")
        else:
            contact_id = self._create("Contact", _contact_from_lead(lead, account_id))
        stamp = self.org.tick()
        self._put("Lead", {**lead, "IsConverted": True, "ConvertedContactId": contact_id,
                           "ConvertedAccountId": account_id, "ConvertedDate": converted_on or stamp[:10],
                           "Status": CONVERTED_STATUS, "LastModifiedDate": stamp, "SystemModstamp": stamp,
                           "LastModifiedById": self.actor_id})
        moved = 0
        for task in list(self.org.records["Task"].values()):
            if task.get("WhoId") == lead["Id"] and not task["IsDeleted"]:
                stamp = self.org.tick()
                self._put("Task", {**task, "WhoId": contact_id, "LastModifiedDate": stamp, "SystemModstamp": stamp,
                                   "LastModifiedById": self.actor_id})
                moved += 1
        return {"lead_id": lead["Id"], "contact_id": contact_id, "account_id": account_id, "tasks_moved": moved}

    def delete(self, type_name: str, record_id: str) -> None:
        sobject = self.sobject(type_name)
        current = self.existing(sobject, record_id)
        stamp = self.org.tick()
        self._put(sobject.name, {**current, "IsDeleted": True, "SystemModstamp": stamp,
                                 "LastModifiedDate": stamp, "LastModifiedById": self.actor_id})

    def existing(self, sobject, record_id: object) -> dict:
        """The live record, or the error Salesforce gives for a junk, unknown or deleted id."""
        normalized = self.org.normalize_id(record_id)
        if normalized is None:
            raise ApiError("MALFORMED_ID", f"{sobject.label} ID: id value of incorrect type: {record_id}", ["Id"])
        record = self.org.records[sobject.name].get(normalized)
        if record is None:
            raise not_found()
        if record["IsDeleted"]:
            raise ApiError("ENTITY_IS_DELETED", "entity is deleted", status=404)
        return record

    # Salesforce's own logic ---------------------------------------------------------

    def _derive(self, type_name: str, record: dict) -> None:
        if type_name in _NAMED:
            record["Name"] = " ".join(p for p in (record.get("FirstName"), record.get("LastName")) if p) or None
        if type_name == "EmailMessageRelation" and record.get("RelationId"):
            record["RelationObjectType"] = self.org.type_of(record["RelationId"])

    def _check_record(self, sobject, record: dict, current: dict | None) -> None:
        check_required(sobject, record)
        if current is not None and sobject.name != "Lead":
            # an update keeping a reference it already had (a Task's WhoId) is refused as well once that
            # Lead is converted; a new value was checked with the values written
            for field in sobject.fields.values():
                value = record.get(field.name)
                if field.type == "reference" and value and value == current.get(field.name) \
                        and self.org.type_of(value) == "Lead" and (self.org.record(value) or {}).get("IsConverted"):
                    raise converted_lead(f"cannot reference converted lead: {value}", field.name)
        for field in sobject.unique_fields:
            value = record.get(field.name)
            if value is None or (current and current.get(field.name) == value):
                continue
            holder = self.org.unique_owner(sobject.name, field.name, value)
            if holder is not None and holder != record["Id"]:
                raise ApiError("DUPLICATE_VALUE", f"duplicate value found: {field.name} duplicates value on "
                               f"record with id: {holder}", [field.name])
        if self.rules:
            check_rules(self.org.validation_rules.values(), sobject, record)

    def _relate(self, message: dict, target_id: str, relation_type: str) -> None:
        target = self.org.record(target_id)
        self._create("EmailMessageRelation", {
            "EmailMessageId": message["Id"], "RelationId": target_id, "RelationType": relation_type,
            "RelationAddress": target.get("Email") if target else None,
        })

    def _ensure_task(self, message: dict, who_id: str) -> None:
        """Enhanced Email: the first Contact/Lead on an email gets the Task that shows it on the timeline."""
        if self.org.type_of(who_id) not in ("Contact", "Lead"):
            return
        if message.get("ActivityId"):
            task = self.org.records["Task"].get(message["ActivityId"])
            if task is not None and task["WhoId"] is None:
                self._put("Task", {**task, "WhoId": who_id, "SystemModstamp": self.org.tick()})
            return
        message_date = message.get("MessageDate") or message["CreatedDate"]
        task_body = {
            "Subject": f"Email: {message.get('Subject') or ''}"[:255],
            "Description": (message.get("TextBody") or "")[:32000] or None,
            "TaskSubtype": "Email", "Status": "Completed", "Priority": "Normal",
            "WhoId": who_id, "ActivityDate": message_date[:10],
        }
        task_id = _as_system(self)._create("Task", task_body)
        self._put("EmailMessage", {**self.org.records["EmailMessage"][message["Id"]], "ActivityId": task_id})


#: Lead field -> the Contact field a conversion copies it to (the org's standard lead field mapping)
_LEAD_TO_CONTACT = {
    "FirstName": "FirstName", "LastName": "LastName", "Email": "Email", "Secondary_Email__c": "Secondary_Email__c",
    "Title": "Title", "Phone": "Phone", "MobilePhone": "MobilePhone", "LeadSource": "LeadSource",
    "Description": "Description", "Country": "MailingCountry", "CountryCode": "MailingCountryCode",
    "StateCode": "MailingStateCode", "Unify_Sequence_Status__c": "Unify_Sequence_Status__c",
    "OwnerId": "OwnerId", "HasOptedOutOfEmail": "HasOptedOutOfEmail",
}


def _contact_from_lead(lead: dict, account_id: str | None) -> dict:
    body = {contact_field: lead[lead_field] for lead_field, contact_field in _LEAD_TO_CONTACT.items()
            if lead.get(lead_field) is not None}
    if account_id:
        body["AccountId"] = account_id
    return body


def _as_system(writer: Writer) -> Writer:
    """Salesforce's own inserts skip the admin's validation rules; share the journal for rollback."""
    system = Writer(writer.org, actor_id=writer.actor_id, privileged=True, rules=False)
    system._journal = writer._journal
    return system


def find_by_field(org, sobject, field, value) -> list[str]:
    """Ids of live records whose `field` equals `value` (used by upsert and GET by external id)."""
    if field.name == "Id":
        normalized = org.normalize_id(value)
        record = org.records[sobject.name].get(normalized) if normalized else None
        return [normalized] if record is not None and not record["IsDeleted"] else []
    if field.unique:
        holder = org.unique_owner(sobject.name, field.name, value)
        return [holder] if holder else []
    lowered = str(value).lower()
    return [rec["Id"] for rec in org.records[sobject.name].values()
            if not rec["IsDeleted"] and rec.get(field.name) is not None and str(rec[field.name]).lower() == lowered]

