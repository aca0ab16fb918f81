"""Client library for services and processors built on the consent platform.

- :mod:`consent_client.events` / :mod:`consent_client.parsing`: typed events, parsers.
- :class:`ConsentView`: a local copy of ``consent.state.v1`` answering ``allowed()``.
- :class:`Subscriber`: a consumer loop over ``consent.events.v1`` (dedupe, stale, park).
- :class:`Processor` and :func:`verify`: receiving the propagator's webhooks.
- :class:`DecisionClient` / :class:`AsyncDecisionClient`: the decision API, fail-closed.
"""

from consent_client.decisions import (
    AsyncDecisionClient,
    Decision,
    DecisionClient,
    DecisionError,
    Query,
    consent_token,
)
from consent_client.events import (
    EVENT_TYPES,
    DecisionEvent,
    Event,
    MalformedEvent,
    StateRecord,
    SubjectErasureRequested,
    SubjectEvent,
    WebhookDelivery,
)
from consent_client.parsing import ParsedRecord, Parser, parse_record, parse_webhook
from consent_client.processor import (
    Outcome,
    Processor,
    Rejected,
    RetryLater,
    SignatureError,
    asgi_app,
    verify,
)
from consent_client.stores import IdempotencyStore, MemoryStore, ParkedRecord, SqliteStore
from consent_client.subscriber import Delivery, Reject, Subscriber
from consent_client.view import (
    Answer,
    ConsentView,
    MemoryViewStore,
    SqliteViewStore,
    SubjectDecisions,
)

__all__ = [
    "EVENT_TYPES",
    "Answer",
    "AsyncDecisionClient",
    "ConsentView",
    "Decision",
    "DecisionClient",
    "DecisionError",
    "DecisionEvent",
    "Delivery",
    "Event",
    "IdempotencyStore",
    "MalformedEvent",
    "MemoryStore",
    "MemoryViewStore",
    "Outcome",
    "ParkedRecord",
    "ParsedRecord",
    "Parser",
    "Processor",
    "Query",
    "Reject",
    "Rejected",
    "RetryLater",
    "SignatureError",
    "SqliteStore",
    "SqliteViewStore",
    "StateRecord",
    "SubjectDecisions",
    "SubjectErasureRequested",
    "SubjectEvent",
    "Subscriber",
    "WebhookDelivery",
    "asgi_app",
    "consent_token",
    "parse_record",
    "parse_webhook",
    "verify",
]
__version__ = "0.1.0"
