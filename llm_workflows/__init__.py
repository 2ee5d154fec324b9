"""LLM workflows on the OpenAI Chat Completions API: prompt chaining, routing, orchestrator-worker.

Importing this package needs no key, network or file: clients are made on first use.
With no API key, every call replays a recorded response through the real openai client.
"""

from .clients import get_async_client, get_client, setup
from .documents import Document, combine, read_documents
from .errors import ConfigurationError, ModelOutputError, WorkflowError
from .faq import (
    FAQFailure,
    FAQItem,
    FAQResult,
    Sources,
    answer_question,
    build_faq,
    check_single_call,
    find_sources,
    generate_questions,
    single_call_faq,
)
from .orchestration import CustomerReply, WorkerResult, process_customer_message
from .routing import Routed, classify_intent, handle_query, normalize_intent, route, route_many
from .usage import Call, Usage, calls_table, totals

__all__ = [
    "Call",
    "ConfigurationError",
    "CustomerReply",
    "Document",
    "FAQFailure",
    "FAQItem",
    "FAQResult",
    "ModelOutputError",
    "Routed",
    "Sources",
    "Usage",
    "WorkerResult",
    "WorkflowError",
    "answer_question",
    "build_faq",
    "calls_table",
    "check_single_call",
    "classify_intent",
    "combine",
    "find_sources",
    "generate_questions",
    "get_async_client",
    "get_client",
    "handle_query",
    "normalize_intent",
    "process_customer_message",
    "read_documents",
    "route",
    "route_many",
    "setup",
    "single_call_faq",
    "totals",
]
__version__ = "0.1.0"
