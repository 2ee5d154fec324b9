"""The lesson's inputs (three mock web pages, three routing queries, one customer message),
and the lesson's first run of the buggy synthesizer (the brief's), kept as evidence of its bug."""

from __future__ import annotations

from .documents import Document

WEBPAGES = [
    Document(
        title="The Benefits of Solar Energy",
        content="""
Solar energy is a renewable powerhouse, offering numerous environmental and economic benefits.
By converting sunlight into electricity through photovoltaic (PV) panels, it reduces reliance on fossil fuels,
thereby cutting down greenhouse gas emissions. Homeowners who install solar panels can significantly
lower their monthly electricity bills, and in some cases, sell excess power back to the grid.
While the initial installation cost can be high, government incentives and long-term savings make
it a financially viable option for many. Solar power is also a key component in achieving energy
independence for nations worldwide.
""".strip(),
    ),
    Document(
        title="Understanding Wind Turbines",
        content="""
Wind turbines are towering structures that capture kinetic energy from the wind and convert it into
electrical power. They are a critical part of the global shift towards sustainable energy.
Turbines can be installed both onshore and offshore, with offshore wind farms generally producing more
consistent power due to stronger, more reliable winds. The main challenge for wind energy is its
intermittency\u2014it only generates power when the wind blows. This necessitates the use of energy
storage solutions, like large-scale batteries, to ensure a steady supply of electricity.
""".strip(),
    ),
    Document(
        title="Energy Storage Solutions",
        content="""
Effective energy storage is the key to unlocking the full potential of renewable sources like solar
and wind. Because these sources are intermittent, storing excess energy when it's plentiful and
releasing it when it's needed is crucial for a stable power grid. The most common form of
large-scale storage is pumped-hydro storage, but battery technologies, particularly lithium-ion,
are rapidly becoming more affordable and widespread. These batteries can be used in homes, businesses,
and at the utility scale to balance energy supply and demand, making our energy system more
resilient and reliable.
""".strip(),
    ),
]

ROUTING_QUERIES = [
    "My internet connection is not working.",
    "I think there is a mistake on my last invoice.",
    "What are your opening hours?",
]

CUSTOMER_MESSAGE = """
Hi, I'm writing to you because I have a question about invoice #INV-7890. It seems higher than I expected.
Also, I would like to return the 'SuperWidget 5000' I bought because it's not compatible with my system.
Finally, can you give me an update on my order #A-12345?
""".strip()


# The lesson's first run of the orchestrator-worker (the brief's, docs/recordings.md), before
# its synthesizer bug was fixed. Its synthesizer tested 'ProductReturn' where the worker wrote
# 'Product Return', so the return never reached the prompt. This email is what gpt-4.1-mini
# wrote from that prompt, as the brief printed it (the trailing spaces and the "[Your Name]"
# are the model's).
FIRST_RUN_EMAIL = (
    "Hi there,\n"
    "\n"
    "Thank you for reaching out to us. I wanted to provide you with an update regarding your recent queries.\n"
    "\n"
    "Concerning your billing inquiry about Invoice Number INV-7890, we understand that the amount appeared higher than expected. To address this, we have opened an investigation under Case ID INV_CASE_1468. Our team is actively looking into this and will get back to you within the next 2 business days with a resolution.\n"
    "\n"
    "Regarding your order status for Order ID A-12345, please note that the shipment with Standard Post is currently delayed. The tracking number SP40802 indicates that delivery is now expected within the next 2 to 3 days. We appreciate your patience as we work to get your order to you as promptly as possible.\n"
    "\n"
    "If you have any further questions or need assistance, please don’t hesitate to reach out.\n"
    "\n"
    "Best regards,  \n"
    "[Your Name]  \n"
    "Customer Support Team"
)

# The IDs the first run's workers produced (its simulated backends drew them at random).
FIRST_RUN_IDS = {
    "Billing Inquiry": ["INV-7890", "INV_CASE_1468"],
    "Product Return": ["SuperWidget 5000", "RMA-63742"],
    "Status Update": ["A-12345", "SP40802"],
}
