"""Everything that talks to Salesforce: the gateway over simple-salesforce and error classification."""

from workers.salesforce.errors import SalesforceError, classify_error
from workers.salesforce.gateway import RecordResult, SalesforceGateway

__all__ = ["RecordResult", "SalesforceError", "SalesforceGateway", "classify_error"]
