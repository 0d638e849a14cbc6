"""The org's objects: Account, Contact, Lead, User, Task, EmailMessage, EmailMessageRelation."""
from __future__ import annotations

from typing import Any

from .countries import US_STATES, country_codes
from .fields import Field, SObjectType, system_fields

UNIFY_SEQUENCE_STATUSES = (
    "In Progress - Queued", "In Progress - Started", "In Progress - Paused",
    "In Progress - Blocked", "Completed", "Finished", "Excluded", "Opted Out", "Bounced",
    "Bounce Stopped (Email Invalid)", "Canceled", "Completed: Replied",
)
TASK_STATUSES = ("Not Started", "In Progress", "Completed", "Waiting on someone else", "Deferred")
EMAIL_STATUSES = ("0", "1", "2", "3", "4", "5")
RELATION_TYPES = ("ToAddress", "CcAddress", "BccAddress", "FromAddress")
LEAD_SOURCES = ("Web", "Phone Inquiry", "Partner Referral", "Purchased List", "Other")
LEAD_STATUSES = ("Open - Not Contacted", "Working - Contacted", "Closed - Converted", "Closed - Not Converted")
#: the Status a converted Lead gets
CONVERTED_STATUS = "Closed - Converted"
#: Lead fields only a conversion sets; no write through the API (nor an admin edit) may
CONVERSION_FIELDS = ("IsConverted", "ConvertedContactId", "ConvertedAccountId", "ConvertedDate")
PRODUCT_INTERESTS = ("Data Enrichment", "Intent Signals", "Sequences", "Plays", "AI Agents")

_RO: dict[str, Any] = dict(createable=False, updateable=False)


def _obj(name, label, plural, prefix, fields, feature=None) -> SObjectType:
    everything = system_fields(label) + fields
    return SObjectType(name, label, plural, prefix, {f.name: f for f in everything}, feature)


def _owner() -> Field:
    return Field("OwnerId", "reference", "Owner ID", 18, nillable=False, defaulted=True,
                 reference_to=("User",), relationship_name="Owner")


def _name() -> Field:
    return Field("Name", "string", "Full Name", 121, calculated=True, **_RO)


def build_catalog() -> dict[str, SObjectType]:
    """Fresh metadata; the picklists are those the sfsync mappings rely on."""
    account = _obj("Account", "Account", "Accounts", "001", [
        Field("Name", "string", "Account Name", 255, nillable=False),
        Field("Website", "url", "Website", 255),
        Field("Industry", "picklist", "Industry", 255,
              picklist=("Technology", "Finance", "Healthcare", "Retail", "Other")),
        Field("Phone", "phone", "Account Phone", 40),
        Field("Description", "textarea", "Account Description", 32000),
        _owner(),
    ])
    contact = _obj("Contact", "Contact", "Contacts", "003", [
        Field("FirstName", "string", "First Name", 40),
        Field("LastName", "string", "Last Name", 80, nillable=False),
        _name(),
        Field("Email", "email", "Email", 80, id_lookup=True),
        Field("Secondary_Email__c", "email", "Secondary Email", 80),
        # external id without a unique constraint: lets upsert by it report 300 on duplicates
        Field("Unify_Person_Id__c", "string", "Unify Person Id", 255, external_id=True, id_lookup=True),
        Field("Title", "string", "Title", 128),
        Field("Phone", "phone", "Business Phone", 40),
        Field("MobilePhone", "phone", "Mobile Phone", 40),
        Field("AccountId", "reference", "Account ID", 18, reference_to=("Account",),
              relationship_name="Account"),
        Field("MailingCountry", "string", "Mailing Country", 80),
        Field("MailingCountryCode", "picklist", "Mailing Country Code", 10,
              picklist=country_codes(), restricted=True),
        Field("MailingStateCode", "picklist", "Mailing State/Province Code", 10, picklist=tuple(US_STATES)),
        Field("Product_Interest__c", "multipicklist", "Product Interest", 4099,
              picklist=PRODUCT_INTERESTS, restricted=True),
        Field("Unify_Sequence_Status__c", "picklist", "Unify Sequence Status", 255,
              picklist=UNIFY_SEQUENCE_STATUSES, restricted=True),
        Field("LeadSource", "picklist", "Lead Source", 255, picklist=LEAD_SOURCES),
        Field("Description", "textarea", "Contact Description", 32000),
        _owner(),
        Field("HasOptedOutOfEmail", "boolean", "Email Opt Out", nillable=False, defaulted=True,
              default_value=False),
    ])
    lead = _obj("Lead", "Lead", "Leads", "00Q", [
        Field("FirstName", "string", "First Name", 40),
        Field("LastName", "string", "Last Name", 80, nillable=False),
        _name(),
        Field("Company", "string", "Company", 255, nillable=False),
        Field("Email", "email", "Email", 80, id_lookup=True),
        Field("Secondary_Email__c", "email", "Secondary Email", 80),
        Field("Title", "string", "Title", 128),
        Field("Phone", "phone", "Phone", 40),
        Field("MobilePhone", "phone", "Mobile Phone", 40),
        Field("Country", "string", "Country", 80),
        Field("CountryCode", "picklist", "Country Code", 10, picklist=country_codes(), restricted=True),
        Field("StateCode", "picklist", "State/Province Code", 10, picklist=tuple(US_STATES)),
        Field("Status", "picklist", "Status", 255, nillable=False, defaulted=True,
              default_value="Open - Not Contacted",
              picklist=LEAD_STATUSES, restricted=True),
        Field("LeadSource", "picklist", "Lead Source", 255, picklist=LEAD_SOURCES),
        Field("Product_Interest__c", "multipicklist", "Product Interest", 4099,
              picklist=PRODUCT_INTERESTS, restricted=True),
        Field("Unify_Sequence_Status__c", "picklist", "Unify Sequence Status", 255,
              picklist=UNIFY_SEQUENCE_STATUSES, restricted=True),
        Field("Description", "textarea", "Description", 32000),
        _owner(),
        Field("HasOptedOutOfEmail", "boolean", "Email Opt Out", nillable=False, defaulted=True,
              default_value=False),
        # set only by converting the lead (the admin API's convert call, as a person in Setup would)
        Field("IsConverted", "boolean", "Converted", nillable=False, defaulted=True, default_value=False, **_RO),
        Field("ConvertedContactId", "reference", "Converted Contact ID", 18, reference_to=("Contact",),
              relationship_name="ConvertedContact", **_RO),
        Field("ConvertedAccountId", "reference", "Converted Account ID", 18, reference_to=("Account",),
              relationship_name="ConvertedAccount", **_RO),
        Field("ConvertedDate", "date", "Converted Date", **_RO),
    ])
    user = _obj("User", "User", "Users", "005", [
        Field("Username", "string", "Username", 80, nillable=False, unique=True, id_lookup=True),
        Field("Email", "email", "Email", 128, nillable=False),
        Field("FirstName", "string", "First Name", 40),
        Field("LastName", "string", "Last Name", 80, nillable=False),
        _name(),
        Field("Alias", "string", "Alias", 8),
        Field("IsActive", "boolean", "Active", nillable=False, defaulted=True, default_value=True),
    ])
    task = _obj("Task", "Task", "Tasks", "00T", [
        Field("Subject", "combobox", "Subject", 255, picklist=("Call", "Send Letter", "Send Quote", "Other")),
        Field("Description", "textarea", "Description", 32000),
        Field("ActivityDate", "date", "Due Date Only"),
        Field("Status", "picklist", "Status", 255, nillable=False, defaulted=True,
              default_value="Not Started", picklist=TASK_STATUSES, restricted=True),
        Field("Priority", "picklist", "Priority", 255, nillable=False, defaulted=True,
              default_value="Normal", picklist=("High", "Normal", "Low")),
        Field("WhoId", "reference", "Name ID", 18, reference_to=("Contact", "Lead"), relationship_name="Who"),
        Field("WhatId", "reference", "Related To ID", 18, reference_to=("Account",), relationship_name="What"),
        _owner(),
        Field("TaskSubtype", "picklist", "Task Subtype", 255,
              picklist=("Task", "Email", "ListEmail", "Cadence", "Call"), updateable=False),
        Field("Type", "picklist", "Type", 255, picklist=("Call", "Email", "Meeting", "Other")),
        Field("Unify_Event_Id__c", "string", "Unify Event Id", 255, external_id=True, unique=True,
              id_lookup=True),
    ])
    email = _obj("EmailMessage", "Email Message", "Email Messages", "02s", [
        Field("Subject", "string", "Subject", 3000),
        Field("HtmlBody", "textarea", "HTML Body", 131072),
        Field("TextBody", "textarea", "Text Body", 131072),
        Field("FromAddress", "email", "From Address", 1000),
        Field("FromName", "string", "From Name", 1000),
        Field("ToAddress", "string", "To Address", 4000),
        Field("CcAddress", "string", "CC Address", 4000),
        Field("BccAddress", "string", "BCC Address", 4000),
        Field("ToIds", "junctionidlist", "To IDs", updateable=True, write_only=True,
              reference_to=("Contact", "Lead", "User")),
        Field("CcIds", "junctionidlist", "CC IDs", write_only=True, reference_to=("Contact", "Lead", "User")),
        Field("BccIds", "junctionidlist", "BCC IDs", write_only=True, reference_to=("Contact", "Lead", "User")),
        Field("MessageDate", "datetime", "Message Date"),
        Field("Incoming", "boolean", "Is Incoming", nillable=False, defaulted=True, default_value=False),
        Field("Status", "picklist", "Status", 40, nillable=False, picklist=EMAIL_STATUSES, restricted=True),
        Field("MessageIdentifier", "string", "Message ID", 255),
        Field("ThreadIdentifier", "string", "Thread ID", 255),
        Field("ClientThreadIdentifier", "string", "Client Thread ID", 40),
        Field("ReplyToEmailMessageId", "reference", "Email Message ID", 18,
              reference_to=("EmailMessage",), relationship_name="ReplyToEmailMessage"),
        Field("RelatedToId", "reference", "Related To ID", 18, reference_to=("Account", "Contact", "Lead"),
              relationship_name="RelatedTo"),
        Field("ActivityId", "reference", "Activity ID", 18, reference_to=("Task",), **_RO),
        Field("Unify_Event_Id__c", "string", "Unify Event Id", 255, external_id=True, unique=True,
              id_lookup=True),
    ], feature="enhanced_email")
    relation = _obj("EmailMessageRelation", "Email Message Relation", "Email Message Relations", "0CU", [
        Field("EmailMessageId", "reference", "Email Message ID", 18, nillable=False, updateable=False,
              reference_to=("EmailMessage",), relationship_name="EmailMessage"),
        Field("RelationId", "reference", "Relation ID", 18, reference_to=("Contact", "Lead", "User"),
              relationship_name="Relation"),
        Field("RelationType", "picklist", "Relation Type", 40, nillable=False, picklist=RELATION_TYPES,
              restricted=True),
        Field("RelationAddress", "email", "Relation Address", 1000),
        Field("RelationObjectType", "string", "Relation Object Type", 40, **_RO),
    ], feature="enhanced_email")
    return {o.name: o for o in (account, contact, lead, user, task, email, relation)}
