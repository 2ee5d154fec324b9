"""LLM workflows on the OpenAI Chat Completions API: prompt chaining, routing, orchestrator-worker.

Importing this package needs no key, network or file: clients are made on first use.
With no API key, every call replays a recorded response through the real openai client.

The lesson's modules are at the top (prompts, the three workflows, the chat call, usage,
display and checks); the plumbing is one folder down: ``runtime`` (settings, clients,
recordings, the wire), ``bulk`` (file runs, the rate limiter, the Batch API) and
``testing`` (the fake model). See docs/architecture.md.
"""

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
from .llm import achat, chat
from .orchestration import CustomerReply, WorkerResult, process_customer_message
from .routing import Routed, classify_intent, handle_query, normalize_intent, route, route_many
from .runtime import get_async_client, get_client, setup
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
    "achat",
    "answer_question",
    "build_faq",
    "calls_table",
    "chat",
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
