"""Every prompt of the lesson, each defined once as a ``str.format`` template.

Each template is formatted exactly once, with the user's text as the values; ``str.format``
does not re-read what it substitutes, so documents and queries may contain ``{`` and ``}``.
(The lesson's first draft built the answer prompt as an f-string and then called
``.format`` on the result, which crashes on a document containing braces.)
"""

# --- Section 1: one big call -------------------------------------------------------------

FAQ_SYSTEM = "You are an expert at creating FAQs from provided documents."

SINGLE_CALL_FAQ = """
Based on the provided content from three webpages, generate a list of exactly 10 frequently asked questions (FAQs).
For each question, provide a concise answer derived ONLY from the text.
After each answer, you MUST include a list of the 'Source Title's that were used to formulate that answer.

Your final output should be a JSON array where each object has three keys: "question", "answer", and "sources" (which is an array of strings).

Provided Content:
---
{combined_content}
---
""".strip()

# --- Section 2: the FAQ chain ------------------------------------------------------------

GENERATE_QUESTIONS_SYSTEM = "You are a helpful assistant that generates questions based on text."

# JSON mode always returns an object, so ask for the list under a key instead of a bare array.
GENERATE_QUESTIONS = """
Based on the content below, generate a list of 10 relevant and distinct questions that a user might have.
Return these questions as a JSON object with a single key "questions" whose value is an array of strings.

Provided Content:
---
{combined_content}
---
""".strip()

ANSWER_QUESTION_SYSTEM = "You answer questions based *only* on the provided context."

ANSWER_QUESTION = """
Using ONLY the provided content below, answer the following question.
The answer should be concise and directly address the question.

Question:
"{question}"

Provided Content:
---
{combined_content}
---
""".strip()

FIND_SOURCES_SYSTEM = "You are an expert at identifying document sources for a given text."

FIND_SOURCES = """
You will be given a question and an answer that was generated from a set of documents.
Your task is to identify which of the original documents were used to create the answer.
Return a JSON object with a single key "sources" which is a list of the titles of the relevant documents.

Question: "{question}"
Answer: "{answer}"

Documents:
---
{combined_content}
---
""".strip()

# --- Section 4: routing ------------------------------------------------------------------

CLASSIFY_SYSTEM = "You are an expert at classifying user intents."

CLASSIFY_INTENT = """
Classify the user's query into one of the following categories:
"Technical Support", "Billing Inquiry", or "General Question".
Return only the category name and nothing else.
User Query: "{user_query}"
""".strip()

TECHNICAL_SUPPORT = """
You are a helpful technical support agent.
The user says: '{user_query}'.
Provide a helpful first response, asking for more details like what troubleshooting steps they have already tried.
""".strip()

BILLING_INQUIRY = """
You are a helpful billing support agent.
The user says: '{user_query}'.
Acknowledge their concern and inform them that you will need to look up their account, asking for their account number.
""".strip()

GENERAL_QUESTION = """
You are a general assistant.
The user says: '{user_query}'.
Apologize that you are not sure how to help and ask them to rephrase their question.
""".strip()

# --- Section 5: orchestrator-worker ------------------------------------------------------

ORCHESTRATOR = """
You are a master orchestrator. Your job is to break down a complex user query into a JSON array of objects.
Each object represents one sub-task and must have a "query_type" and relevant parameters.

The possible "query_type" values are:
1. "BillingInquiry": Requires "invoice_number".
2. "ProductReturn": Requires "product_name" and "reason_for_return".
3. "StatusUpdate": Requires "order_id".

User Query:
---
{complex_query}
---

Return ONLY the JSON array and nothing else. Start with "[", end with "]" and separate objects with a comma.
""".strip()

BILLING_WORKER_EXTRACTOR = """
You are a specialized assistant. A user has a query regarding invoice '{invoice_number}'.
From the full user query provided below, extract the specific concern or question the user has voiced about this particular invoice.
Respond with ONLY the extracted concern/question. If no specific concern is mentioned beyond a general inquiry about the invoice, state 'General inquiry regarding the invoice'.

Full User Query:
---
{original_user_query}
---

Extracted concern about invoice {invoice_number}:
""".strip()

RETURN_SHIPPING_INSTRUCTIONS = (
    "Please pack the '{product_name}' securely in its original packaging if possible. "
    "Include all accessories and manuals. Write the RMA number ({rma_number}) clearly on the "
    "outside of the package. Ship to: Returns Department, 123 Automation Lane, Tech City, TC 98765."
)

# Added to the synthesizer's points when some requests were not served, so the email says so.
UNHANDLED_REQUESTS = """
Regarding the rest of your message:
  - {count} of your requests could not be handled automatically. Please reply with the details (for example the order or invoice number) so that we can help with them.
""".strip()

SYNTHESIZER = """
You are a master communicator. Combine several distinct pieces of information from our support team into a single, well-formatted, and friendly email to a customer.

Here are the points to include, based on the actions taken for their query:
---
{formatted_results}
---

Combine these points into one cohesive response. Start with a friendly greeting (e.g., "Dear Customer," or "Hi there,") and end with a polite closing (e.g., "Sincerely," or "Best regards,") followed by this signature, exactly as written:
{signature}
Ensure the tone is helpful and professional.
""".strip()
