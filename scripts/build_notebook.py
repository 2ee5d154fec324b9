"""Write notebooks/llm_workflows.ipynb from the cells below, then execute it in replay mode.

Run: ``python scripts/build_notebook.py`` after changing a cell here (the notebook is the
output of this script: edit the lesson here, not in Jupyter). Execution is done by
``scripts/execute_notebook.py``, which ``make record`` also uses to refresh the stored
outputs after re-recording the model's replies.

Every code cell imports its prompts and functions from ``llm_workflows`` and prints the
package's own templates and source code, so the lesson cannot drift from the package.
The notebook makes exactly the calls of ``run_workflows()`` in scripts/seed_recordings.py,
with the same inputs, so that replay (no key) answers every one of them.
"""

from __future__ import annotations

import sys
from pathlib import Path
from textwrap import dedent
from urllib.parse import quote

import nbformat

ROOT = Path(__file__).resolve().parent.parent
NOTEBOOK = ROOT / "notebooks" / "llm_workflows.ipynb"

# TODO: the project's public repository, once it has one. The install cell and the
# "Open in Colab" badge both use this one URL.
REPO_URL = "https://github.com/<OWNER>/llm-workflows"
NOTEBOOK_PATH = "notebooks/llm_workflows.ipynb"
COLAB_URL = quote(
    REPO_URL.replace("https://github.com/", "https://colab.research.google.com/github/")
    + f"/blob/main/{NOTEBOOK_PATH}",
    safe=":/",
)

CELLS: list[tuple[str, str]] = []


def md(text: str) -> None:
    CELLS.append(("markdown", dedent(text).strip()))


def code(text: str) -> None:
    CELLS.append(("code", dedent(text).strip()))


# --- Title and setup -----------------------------------------------------------------------

md(f"""
# LLM workflows: prompt chaining, routing and orchestrator-worker

[![Open In Colab](https://colab.research.google.com/assets/colab-badge.svg)]({COLAB_URL})

The first prompt most of us write asks the model to do everything at once. It is also often
the first thing that breaks. In this lesson we split the work into several LLM calls and
connect them with plain Python:

1. **Why chain LLM calls?** One big call, what goes wrong with it, and how to check it.
2. **A sequential workflow:** generate questions → answer each one → find its sources; first
   one step after another, then with the independent steps running concurrently.
3. **Routing and conditional logic:** letting an LLM decide which path an input takes.
4. **A routing workflow:** classify a customer's intent, then answer with a prompt made for it.
5. **Orchestrator-worker:** an LLM splits a message into tasks, workers handle them
   concurrently, and a last call writes one reply.

We use only the [OpenAI Python library](https://github.com/openai/openai-python/blob/main/README.md)
(Chat Completions API) and a small package, `llm_workflows`, that holds every prompt and
function of this lesson. The notebook imports them instead of redefining them, and prints
each prompt and each function where we discuss it: what you read is exactly the code that
runs, and the code the package's tests check.

**No API key? Every cell still runs.** Without a key, each model call is answered from
recordings shipped with the package, through the real `openai` client. The outputs stored
in this notebook are those recordings. With your key, the same cells call the model live.
""")

md("""
## Setup

### Install the package

In Colab, the next cell installs `llm_workflows` (and the `openai` library it needs) from
the project's repository. On your own machine, install the repository instead
(`pip install -e ".[dev]"` in a clone, or `make install`); the cell then does nothing.
""")

code(f"""
# Colab only: install the lesson's package from its repository (nothing to do elsewhere,
# or once it is installed).
import sys

# The project's repository (the "Open in Colab" badge above points to the same one).
REPO_URL = "{REPO_URL}"  # TODO: replace <OWNER> once the repository is public

if "google.colab" in sys.modules:
    try:
        import llm_workflows  # noqa: F401
    except ImportError:
        import importlib
        import subprocess

        subprocess.run(
            [sys.executable, "-m", "pip", "install", "--quiet", f"git+{{REPO_URL}}"], check=True
        )
        importlib.invalidate_caches()  # so that this kernel finds the new package
""")

md("""
### Your OpenAI API key

To call OpenAI models you need an API key, and API calls are paid from prepaid credits:

1. **Create an account** on the [OpenAI platform](https://platform.openai.com) and sign in.
2. **Buy credits.** API usage is prepaid: on the
   [billing page](https://platform.openai.com/settings/organization/billing/overview), add a
   payment method and buy credits. The minimum purchase is $5, far more than this lesson
   needs: one run of this notebook costs a fraction of a cent (we add it up at the end).
   A ChatGPT subscription does not include API credits.
3. **Create a key** on the [API keys page](https://platform.openai.com/api-keys): click
   *Create new secret key*, give it a name, and copy it. It is shown only once; if you lose
   it, delete it and create a new one. Treat it like a password: never paste it into a
   notebook cell, and never commit it.
4. **Store it as a Colab secret.** In Colab, click the key icon (*Secrets*) in the left
   sidebar, then *Add new secret*. Name it `OPENAI_API_KEY`, paste the key as its value,
   and switch on *Notebook access* for it. The first time a notebook reads the secret,
   Colab may ask you to grant it access: accept.

A notebook reads a Colab secret with `google.colab.userdata`:

```python
from google.colab import userdata

api_key = userdata.get("OPENAI_API_KEY")  # an error if the secret is missing or access is off
```

You do not have to write this: `llm_workflows` looks for the key for you, in this order:
the `OPENAI_API_KEY` environment variable (which the `openai` client also reads by
itself), a `.env` file in the current folder or above it, then the Colab secret. On your
own machine, copy `.env.example` to `.env` and fill in `OPENAI_API_KEY=...` (git ignores
`.env`). The package never prints the key, only where it found it.

If no key is found, the package runs in **replay mode**: every request is looked up in the
recordings shipped with the package and answered from them, so every cell below still
runs. (A request that was never recorded fails with a message that says so.)

Code that calls the API usually starts by creating a client: `OpenAI()`, and
`AsyncOpenAI()` for async code. In the package both clients are created on first use, then
shared by every call. The next cell reads the settings and says what the notebook will do;
it also defines three small display helpers that we use throughout.
""")

code("""
import inspect
import json
import math
import re
import time
from importlib.resources import files

from IPython.display import Image

from llm_workflows import prompts, setup

settings = setup()  # finds the key (environment, .env, Colab secret) and picks the mode
print(settings.describe())


def show_prompts(*names):
    \"\"\"Print prompt templates of llm_workflows.prompts: the very strings the code formats.\"\"\"
    for name in names:
        print(f"----- prompts.{name} -----")
        print(getattr(prompts, name))
        print()


def show_source(*functions):
    \"\"\"Print the source code of package functions, as the package defines them.\"\"\"
    for function in functions:
        print(inspect.getsource(function))


def show_diagram(name):
    \"\"\"One of the workflow diagrams shipped with the package.\"\"\"
    return Image(data=(files("llm_workflows") / "diagrams" / f"{name}.png").read_bytes())
""")

md("""
The stored output says `Mode: replay`: what you see in this notebook are the recordings.
In Colab, with your secret set, you should see
`Mode: live. Calling the API with the key from the Colab secret OPENAI_API_KEY.`
If the secret exists but *Notebook access* is off, or Colab asked and you declined, a line
under it says what to switch on; fix it and re-run the cell.
""")

# --- Section 1 -------------------------------------------------------------------------------

md("""
## 1. The power of modularity: why chain LLM calls?

### The problem with a single, large LLM call

A single prompt for a complex, multi-step task is tempting: one call, one answer. It has
real problems:

- **Reduced accuracy and coherence**, at least with non-thinking models. A model that
  answers in one pass, without reasoning first (like `gpt-4.1-nano` and `gpt-4.1-mini`,
  the models of this lesson), must juggle every instruction at once, and often satisfies
  some of them while quietly dropping others. Thinking (reasoning) models plan before they
  answer and follow complex prompts better, at the price of more tokens and more time.
- **Failures are hard to pinpoint.** When the one output is wrong, you cannot tell which
  part of the instructions failed, or why: everything happened inside one call.
- **No modularity.** Improving one part (say, how sources are cited) means editing the big
  prompt, and any edit can change the rest of the output too.
- **"Lost in the middle".** Models use what sits at the start and the end of a long context
  better than what sits in the middle
  ([Liu et al., 2023](https://arxiv.org/abs/2307.03172)). One big prompt piles instructions
  and long documents into exactly that kind of context.
- **Token cost.** A prompt that does too much keeps growing (more instructions, more
  examples, more caveats), and when one part of the output is wrong, the only retry is
  the whole call.

Let's see this on an example: build an FAQ (questions, answers, and the sources of each
answer) from three short web pages, in a single call.
""")

code('show_diagram("single_call")')

md("""
The lesson's inputs live in `llm_workflows.lesson`. Each web page is a `Document` with a
title and a text, and `combine` puts them into one block, each text under its title (we
will ask the model to cite the titles).
""")

code("""
# Our mock web pages: each source has a title and a text.
from llm_workflows import combine
from llm_workflows.lesson import WEBPAGES

# We combine the pages into one text for the LLM to process.
combined_content = combine(WEBPAGES)
print(f"{len(WEBPAGES)} pages, {len(combined_content):,} characters:\\n")
print(combined_content)
""")

md("""
Now the one big call. The cell prints the prompt (`{combined_content}` is where the pages
go), the function that sends it, and `chat`, the one function of the package that calls
the OpenAI library: `client.chat.completions.create(...)`, through `with_raw_response` so
that it can also read the response headers. Then it sends the request and prints the reply.
""")

code("""
# This prompt tries to do everything at once: generate questions, find answers and cite
# sources. This complexity can often confuse the model.
from llm_workflows import single_call_faq
from llm_workflows.llm import chat

show_prompts("FAQ_SYSTEM", "SINGLE_CALL_FAQ")
show_source(single_call_faq, chat)

single_calls = []  # each call appends a CallRecord: step, model, tokens, seconds
result_complex = single_call_faq(WEBPAGES, calls=single_calls)
# Note: even with JSON mode, the model might fail to follow all instructions perfectly.
print("Complex prompt result (might be inconsistent):")
print(json.dumps(json.loads(result_complex), indent=2))
""")

md("""
At first sight the FAQ looks fine: ten questions, short answers, a source for each. But a
reply that *looks* right is not a check. Let's test the prompt's instructions one by one
against the reply: `check_single_call` (in `llm_workflows/faq.py`) parses the reply and
lists every instruction it breaks (a JSON array, exactly 10 items, each with a question, an
answer and sources, every source a real page title).
""")

code("""
from llm_workflows import check_single_call
from llm_workflows.parsing import find_list

problems = check_single_call(result_complex, WEBPAGES)
print(f"Instructions broken: {len(problems)}")
for problem in problems:
    print(" -", problem)

faqs, _ = find_list(json.loads(result_complex), "faqs")  # the list, wherever the model put it
print(f"\\nFAQ items: {len(faqs)}")
print("Sources cited per answer:", [len(item["sources"]) for item in faqs])
""")

md("""
What to notice in the recorded run shown here (live, your reply will differ, and the same
check will tell you how):

- **The reply is not the JSON array we asked for**, and it could not have been. The request
  turns on JSON mode (`response_format={"type": "json_object"}`), which makes the model
  return a JSON *object*, never a bare array. Two instructions of the same call contradict
  each other, and the model settled it by wrapping the list in an object under a key it
  chose (`"faqs"`). Code that expects the array, `json.loads(reply)[0]`, crashes; code that
  expects another key finds nothing. In one big prompt such conflicts are easy to write and
  hard to see.
- The count, the three keys and the titles are right: those instructions were met.
- **Every answer cites exactly one page.** Is that true, or did the model just pick one?

A rough but useful check for the last point: look for phrases of two content words
("fossil fuels", "greenhouse gas") that appear in an answer and *only* in a page the answer
does not cite.
""")

code("""
STOPWORDS = set(
    "a an and are as be by can for from in is it its like more of on or that the their "
    "they this to when with".split()
)


def phrases(text):
    \"\"\"Pairs of adjacent content words in a text: 'fossil fuels', 'greenhouse gas'...\"\"\"
    words = re.findall(r"[a-z]+(?:-[a-z]+)*", text.lower())
    return {
        f"{a} {b}" for a, b in zip(words, words[1:]) if a not in STOPWORDS and b not in STOPWORDS
    }


def uncited_phrases(answer, sources, documents):
    \"\"\"Phrases of an answer found only in pages it does not cite, by page title.\"\"\"
    cited = set().union(*(phrases(d.content) for d in documents if d.title in sources))
    found = {}
    for document in documents:
        if document.title not in sources:
            only_here = phrases(answer) & (phrases(document.content) - cited)
            if only_here:
                found[document.title] = sorted(only_here)
    return found


for number, item in enumerate(faqs, 1):
    for title, found in uncited_phrases(item["answer"], item["sources"], WEBPAGES).items():
        print(f"Item {number}: {item['question']}")
        print(f"  Answer: {item['answer']}")
        print(f"  Cites {item['sources']}, but uses {found}, found only in {title!r}.")
""")

md("""
In the recorded run, item 10 is about wind power, and its answer ends with "helping
reduce reliance on fossil fuels". The wind page never mentions fossil fuels; the solar page
does. So the answer drew on a page it does not cite: the instruction *"include a list of the 'Source Title's that
were used to formulate that answer"* was not satisfied.

Which part of the work went wrong, writing the answer or listing its sources? With one
call we cannot tell, and we cannot re-run or fix just that part. That is the problem
chaining solves.

### Prompt chaining

[Prompt chaining](https://www.promptingguide.ai/techniques/prompt_chaining) connects
several LLM calls (or other processing steps) in sequence: the output of one step becomes
the input of the next. Its benefits:

- **Improved modularity:** each LLM call focuses on a specific, well-defined sub-task.
- **Enhanced accuracy:** simpler, targeted prompts for each step generally lead to better,
  more reliable outputs.
- **Easier debugging:** you can isolate an issue to one link of the chain, look at its
  input and output, and re-run it alone.
- **Increased flexibility:** individual components can be swapped, updated or optimized
  independently.
- **Potential for optimization:** different steps can use different models (a cheaper,
  faster model for a simple classification step, a more capable one for complex
  generation), and independent steps can run concurrently, as we will do below.

A chain also gives you a place for plain code between the steps: a *gate* that checks one
step's output before the next step uses it.
""")

# --- Section 2 -------------------------------------------------------------------------------

md("""
## 2. Building a sequential workflow: generate questions → answer → find sources

The classic first chain is *summarize → translate*: one call summarizes a text, a second
call translates the summary. Here we apply the same idea to our FAQ and split the big
prompt into three steps, each with one job:

1. **Generate questions** from the pages (one call).
2. **Answer** one question from the pages (one call per question).
3. **Find the sources** of one answer (one call per question).

This is the *prompt chaining* workflow of Anthropic's
[Building effective agents](https://www.anthropic.com/engineering/building-effective-agents)
("trade off latency for higher accuracy, by making each LLM call an easier task"), and the
advice of its guides on [chaining complex prompts](https://docs.anthropic.com/en/docs/build-with-claude/prompt-engineering/chain-prompts)
and [prompting best practices](https://docs.anthropic.com/en/docs/build-with-claude/prompt-engineering/claude-4-best-practices)
(one clear subtask per prompt, explicit instructions, a stated output format) holds for any
model. The diagram shows the chain as we will finally run it: steps 2 and 3 for each
question do not depend on the other questions, so they can run concurrently.
""")

code('show_diagram("faq_chain")')

md("""
The three prompts, each with its own system message. Two details worth copying:

- The question prompt asks for an object, `{"questions": [...]}`, and names its key. JSON
  mode always returns an object: ask for a bare array and the model picks a wrapper key of
  its own, as the single call did with `"faqs"`, and code that expects `"questions"` finds
  nothing.
- Each template is formatted exactly once, with `str.format`. A tempting shortcut, building
  the prompt as an f-string and then calling `.format()` on the result, crashes as soon as
  a page contains `{` or `}`.
""")

code("""
# The chain's prompts, from llm_workflows.prompts
show_prompts(
    "GENERATE_QUESTIONS_SYSTEM",
    "GENERATE_QUESTIONS",
    "ANSWER_QUESTION_SYSTEM",
    "ANSWER_QUESTION",
    "FIND_SOURCES_SYSTEM",
    "FIND_SOURCES",
)
""")

md("""
Each step is a small function that formats its prompt, makes one call and parses the
reply. `parse_sources` is a gate: it keeps only cited names that are real page titles
(ignoring case and spacing) and reports the others instead of passing them on.
""")

code("""
from llm_workflows import answer_question, find_sources, generate_questions
from llm_workflows.faq import parse_sources

show_source(generate_questions, answer_question, find_sources, parse_sources)
""")

md("""
Now the chain, one step after another: generate the questions, then for each question
answer it and find its sources.
""")

code("""
chain_calls = []
start = time.perf_counter()

# Step 1: Generate questions
generated_questions = generate_questions(WEBPAGES, calls=chain_calls)
print(f"Successfully generated {len(generated_questions)} questions.")

# Steps 2 & 3: Answer and find sources for each question
final_faqs = []
for question in generated_questions:
    print(f"  - Processing: '{question[:50]}...'")
    # Step 2: Generate an answer for the current question
    answer = answer_question(question, WEBPAGES, calls=chain_calls)
    # Step 3: Identify the sources for the generated answer
    sources = find_sources(question, answer, WEBPAGES, calls=chain_calls)
    final_faqs.append({"question": question, "answer": answer, "sources": sources.titles})

sequential_seconds = time.perf_counter() - start  # shown with the other timings below

# Final result
print("\\nGenerated FAQ List:")
print(json.dumps(final_faqs, indent=2))
""")

md("""
The result is a plain list in our own format: the shape of the output is decided by our
code, not by the model. Let's compare the sources with the single call's, and run the same
phrase check on the chain's answers.
""")

code("""
for name, items in [("single call", faqs), ("chain", final_faqs)]:
    several = sum(len(item["sources"]) > 1 for item in items)
    print(f"{name:12} answers citing two or more pages: {several} of {len(items)}")
print()
for number, item in enumerate(final_faqs, 1):
    for title, found in uncited_phrases(item["answer"], item["sources"], WEBPAGES).items():
        print(f"Chain item {number}: cites {item['sources']}, but uses {found}, found only in {title!r}.")
""")

md("""
What to notice, in the recorded run shown here:

- **Sources are better.** Several answers now cite two pages where they draw on both (wind
  power's intermittency and energy storage), where the single call always cited one.
- **They are not perfect.** Item 4 (wind energy and sustainable energy goals) uses the solar
  page's "fossil fuels", "greenhouse gas emissions" and "energy independence", and cites
  only the wind page. Some answers also say more than the pages do: item 2 explains that PV
  panels "use solar cells that generate electrical current", and item 9 lists advantages and
  disadvantages of pumped-hydro storage (capacity, site availability, costs) that no page
  mentions. The question step asked questions the pages cannot answer, and the answer step
  filled the gap from the model's general knowledge despite "Using ONLY the provided
  content".
- **We can tell which step failed.** Item 4's sources come from the find-sources step, so
  that is the step to improve (and to test alone, on this one question). Items 2 and 9 point
  at the question step (a gate could drop questions the pages do not answer) and at the
  answer prompt (tell it what to reply when the pages do not say). With one big call, we
  could only rewrite the whole prompt and hope.

### Running the independent steps concurrently

The chain above makes its calls one after another. But once the questions exist, answering
question 3 does not need the answer to question 2: only steps 2 → 3 of the *same* question
depend on each other. `build_faq` runs step 1, then steps 2 → 3 for every question at once
with `asyncio.gather`, at most `concurrency` questions at a time (an `asyncio.Semaphore`
helps us stay under the API's rate limits). A question whose step fails becomes an `FAQFailure`,
and the other questions go on. With `concurrency=1` it is the sequential chain again.
""")

code("""
from llm_workflows import build_faq

show_source(build_faq)
""")

md("""
`build_faq` reports its progress through `on_progress(done, total)`, which we connect to a
[tqdm](https://tqdm.github.io/) progress bar. The notebook awaits it directly: Jupyter and
Colab run an event loop, so a cell can use `await` at top level (no `asyncio.run`).
""")

code("""
from tqdm import tqdm

CONCURRENCY = 16

# A text bar on stdout with a fixed format (no rates or times): it looks the same in
# Colab and Jupyter, and its final state is what the notebook stores.
with tqdm(
    desc="Questions answered", file=sys.stdout, bar_format="{desc}: {n_fmt}/{total_fmt} |{bar:20}|"
) as bar:

    def on_progress(done, total):
        bar.total, bar.n = total, done
        bar.refresh()

    start = time.perf_counter()
    faq_result = await build_faq(WEBPAGES, concurrency=CONCURRENCY, on_progress=on_progress)
    concurrent_seconds = time.perf_counter() - start

print(f"\\n{len(faq_result.items)} questions answered, {len(faq_result.failures)} failed:")
for number, item in enumerate(faq_result.items, 1):
    print(f"{number:2}. {item.question}\\n    Sources: {', '.join(item.sources)}")
same = [(i.question, i.answer, i.sources) for i in faq_result.items] == [
    (f["question"], f["answer"], f["sources"]) for f in final_faqs
]
print(f"\\nSame FAQ as the sequential run: {same}")
""")

md("""
The concurrent chain sends the same requests as the sequential one, so in replay it gets
the same recorded replies and builds the same FAQ (live, every run is a new sample from the
model, and the two FAQs will differ).

### Measured: one call, the chain, the concurrent chain

Every call above left a `CallRecord` with its model, its token counts (the `usage` the
API returns) and its duration. The table below is built from those records. *Calls in a
row* is the longest sequence of calls that must wait for each other: since each of them
waits for the model's reply, it is what sets the waiting time.
""")

code("""
from llm_workflows import totals
from llm_workflows.records import PRICES_AS_OF, PRICES_PER_MILLION

questions = len(faq_result.items) + len(faq_result.failures)
runs = {
    "single call": (single_calls, 1),
    "chain, sequential": (chain_calls, len(chain_calls)),
    # step 1, then answer -> sources for up to CONCURRENCY questions at a time
    "chain, concurrent": (faq_result.calls, 1 + 2 * math.ceil(questions / CONCURRENCY)),
}
print(f"{'workflow':18}  {'calls':>5}  {'calls in a row':>14}  {'prompt tok':>10}  {'completion tok':>14}  {'cost $':>8}")
for name, (calls, in_a_row) in runs.items():
    t = totals(calls)
    print(f"{name:18}  {t.calls:5}  {in_a_row:14}  {t.prompt_tokens:10,}  {t.completion_tokens:14,}  {t.cost_usd:8.6f}")

single, chain = totals(single_calls), totals(faq_result.calls)
print(
    f"\\nThe chain vs the single call: {chain.prompt_tokens / single.prompt_tokens:.1f}x the prompt tokens, "
    f"{chain.completion_tokens / single.completion_tokens:.1f}x the completion tokens, "
    f"{chain.cost_usd / single.cost_usd:.1f}x the cost."
)
print(f"Estimated cost at list prices of {PRICES_AS_OF} (USD per million input, output tokens):")
for model, (price_in, price_out) in PRICES_PER_MILLION.items():
    print(f"  {model}: {price_in:.2f}, {price_out:.2f}")

REPLY_SOURCES = {
    "live": "came from the API (in this run, or recorded by `make record`); their token "
    "counts are the API's own.",
    "brief": "were recorded when this lesson was written (its brief kept the replies but "
    "not their usage); their token counts were computed offline with the model's "
    "tokenizer, not reported by the API.",
    "authored": "were written by hand, because no recording of a model reply exists; their "
    "token counts were computed offline.",
}


def explain_replies(calls):
    \"\"\"Say where the replies of these calls came from (the `reply` column of calls_table).\"\"\"
    for source in sorted({call.source for call in calls}):
        print(f"Replies marked {source!r} {REPLY_SOURCES.get(source, 'have an unknown origin.')}")


print()
explain_replies(single_calls + chain_calls + faq_result.calls)
""")

md("""
What to notice:

- **The chain costs more.** 21 calls instead of 1, and about twenty times the prompt tokens:
  each of the 20 per-question calls sends all three pages again. Completion tokens are
  similar (the same FAQ gets written either way). The cost is about four times higher, and
  still a fraction of a cent with these small models.
- **Concurrency changes the waiting, not the bill.** The concurrent chain makes the same 21
  calls with the same tokens, but only 3 of them have to wait for each other instead of 21.
- **About these numbers:** the replies marked `brief` were recorded when this lesson was
  written, without their usage, so their token counts were computed offline with the
  models' tokenizer and may differ from the API's by a few tokens. When you run live (or
  after `make record`), they are the API's own numbers.

Per step, `calls_table` shows where the tokens go: the find-sources step reads the most,
since its prompt holds the question, the answer *and* all the pages.
""")

code("""
from llm_workflows import calls_table

print(calls_table(faq_result.calls, seconds=False))
""")

md("""
And the time each version took, measured in this run. This is the one kind of number that
changes on every run, so it gets a cell of its own, which the notebook's regression test
does not compare. In replay mode it measures how long the replay took on this machine, not
how long the model takes; run live to see the real difference.
""")

code("""
# NBVAL_IGNORE_OUTPUT
# Wall-clock seconds change on every run (and in replay they time the replay, not the model),
# so the notebook's regression test does not compare the output of this cell.
print(f"Mode: {settings.mode}")
timings = {
    "single call": totals(single_calls).seconds,
    "chain, sequential": sequential_seconds,
    "chain, concurrent": concurrent_seconds,
}
for name, seconds in timings.items():
    print(f"{name:18} {seconds:7.2f} s")
if settings.mode == "replay":
    print("Replay mode: these seconds are replay time on this machine, not model time.")
""")

md("""
### Considerations for each step

- **Prompt clarity.** One job per prompt, the exact output format, and the constraints that
  matter for that step ("Using ONLY the provided content"). Say what the model should do
  when it cannot comply: our answer prompt never says what to reply when the pages do not
  answer the question, and items 2 and 9 show the result. Keep in mind what the API
  enforces: JSON mode returns an object, so ask for an object.
- **Check between steps.** Parse and validate each output before the next step uses it
  (`parse_questions`, `parse_sources`). A chain has more places where a malformed reply can
  slip in, and it also gives you a place to catch it.
- **Handling API errors.** More calls mean more chances of a transient failure. The
  `openai` client retries by itself, with exponential backoff (and honouring the server's
  `retry-after`): connection errors, 408 Request Timeout, 409 Conflict, 429 Rate Limit and
  5xx server errors, twice by default (`max_retries`; see *Retries* and *Timeouts* in its
  [README](https://github.com/openai/openai-python/blob/main/README.md)). When it gives
  up, it raises a typed exception:
  `openai.APIConnectionError` and `openai.APITimeoutError`, `openai.RateLimitError` (429,
  including `insufficient_quota` when your credits run out, which no retry fixes),
  `openai.AuthenticationError` (401, a wrong key), `openai.PermissionDeniedError` (403),
  `openai.NotFoundError` (404, for example a misspelt model name),
  `openai.BadRequestError` (400) and `openai.InternalServerError` (5xx). Our `chat` turns
  each into one `WorkflowError` line that names the step and says what to do, and
  `build_faq` turns a failed question into an `FAQFailure` and finishes the others.
""")

code("""
from llm_workflows import ModelOutputError
from llm_workflows.clients import DEFAULT_MAX_RETRIES, DEFAULT_TIMEOUT_SECONDS
from llm_workflows.faq import parse_questions

print(
    f"The package's clients: max_retries={DEFAULT_MAX_RETRIES}, timeout={DEFAULT_TIMEOUT_SECONDS:g} s "
    "(set LLM_WORKFLOWS_MAX_RETRIES, LLM_WORKFLOWS_TIMEOUT to change them)\\n"
)

# A gate at work: a reply that is not the JSON the next step needs stops the chain with a
# one-line error that names the step (ModelOutputError is a WorkflowError)...
try:
    parse_questions("Sure! Here are ten questions:\\n1. What is solar energy?")
except ModelOutputError as error:
    print(f"{type(error).__name__}: {error}\\n")

# ...and a cited name that is not a page title is set aside instead of passed on.
print(parse_sources('{"sources": ["the benefits of  solar energy", "Wikipedia"]}', WEBPAGES))
""")

md("""
No model call in that cell: the replies are typed in, to show what the gates do with a bad
one. The title check forgives case and spacing, and keeps "Wikipedia" out of the FAQ.

### Downsides of chaining

- **Some instructions only make sense together.** Split into separate prompts, they lose
  meaning: "answer concisely, and cite the pages you used" is easy in one call; in our
  chain, the step that cites the pages has to guess, after the fact, what the answer step
  used (item 4 shows it can guess wrong).
- **More cost.** More calls and more tokens: 21 calls and about four times the cost of the
  single call here, mostly because every step re-reads the pages.
- **More time to completion.** Each step waits for the previous one: 21 calls in a row for
  the sequential chain. Running independent steps concurrently brings that down to 3, but
  never to 1.
- **Information can get lost between steps.** Each step sees only what the previous one
  passed on: a summary that drops a detail cannot be translated back into it. The longer
  the chain, the more likely this is (a single call can lose information too).
""")

# --- Section 3 -------------------------------------------------------------------------------

md("""
## 3. Introducing dynamic behaviour: routing and conditional logic

Our chain treats every input the same way. Real inputs are not all alike: a customer
writing about a broken connection needs a different answer, and often a different team,
than one asking about an invoice. Processing every input with one generic prompt means a
prompt that tries to cover every case, which is the single-big-call problem again.

**Routing** sends each input down the path made for it. The mechanism is ordinary
conditional logic, Python's `if`/`elif`/`else`: *if* the input is a billing question, use
the billing prompt; *elif* ...; *else* a fallback. What is new is who makes the decision:
an **LLM call can be the router**. It classifies the input (or an intermediate result)
into one of a few known categories, and plain code takes the branch for that category.

Each path is a **branch** of the workflow. A branch can be another prompt, another model
(a cheap one for easy cases), a whole chain, or no LLM at all (a database lookup, a
hand-off to a human). The workflow is no longer a straight line but a tree, decided at run
time, input by input.
""")

code('show_diagram("routing")')

# --- Section 4 -------------------------------------------------------------------------------

md("""
## 4. Building a routing workflow: classify intent → route

The use case: the first step of a customer service system. A customer's message comes in;
we classify its intent as *Technical Support*, *Billing Inquiry* or *General Question*, and
answer it with a prompt written for that intent.

### Step 1: intent classification

The classification prompt names the categories exactly and asks for *only* the category
name: a single label, which is easy to parse. The model is `gpt-4.1-mini`.
""")

code("""
from llm_workflows import classify_intent
from llm_workflows.lesson import ROUTING_QUERIES
from llm_workflows.routing import _classify_messages

show_prompts("CLASSIFY_SYSTEM", "CLASSIFY_INTENT")
show_source(_classify_messages, classify_intent)

routing_calls = []
query_1, query_2, query_3 = ROUTING_QUERIES

intent_1 = classify_intent(query_1, calls=routing_calls)
print(f"Query: {query_1}\\nIntent: {intent_1}\\n")
intent_2 = classify_intent(query_2, calls=routing_calls)
print(f"Query: {query_2}\\nIntent: {intent_2}\\n")
intent_3 = classify_intent(query_3, calls=routing_calls)
print(f"Query: {query_3}\\nIntent: {intent_3}\\n")
""")

md("""
Three clean labels, each exactly one of the categories. But the label is free text, and
models do not always comply to the letter: `billing inquiry.`, `**Technical Support**` or
`Category: General Question` are all common. Comparing strings with `==` would send these
to the wrong branch. Parsing the label means mapping it to one known intent, or to `None`
when it names none (or several):
""")

code("""
from llm_workflows import normalize_intent

show_source(normalize_intent)
labels = [intent_1, "billing inquiry.", "**Technical Support**", "Category: General Question",
          "Sales", "Technical Support or Billing Inquiry"]
for label in labels:
    print(f"{label!r:40} -> {normalize_intent(label)!r}")
""")

md("""
### Steps 2 and 3: conditional logic, then the specialized prompt

`choose_prompt` is the `if`/`elif`/`else`: each branch formats its own prompt, and anything
else goes to an explicit **fallback** route. `handle_query` normalizes the label, takes the
branch and sends that branch's prompt.
""")

code("""
from llm_workflows import handle_query
from llm_workflows.routing import choose_prompt

show_prompts("TECHNICAL_SUPPORT", "BILLING_INQUIRY", "GENERAL_QUESTION")
show_source(choose_prompt, handle_query)

response_1 = handle_query(query_1, intent_1, calls=routing_calls)
print(f"Query: {query_1}\\nIntent: {intent_1}\\nResponse: {response_1}\\n")

response_2 = handle_query(query_2, intent_2, calls=routing_calls)
print(f"Query: {query_2}\\nIntent: {intent_2}\\nResponse: {response_2}\\n")

response_3 = handle_query(query_3, intent_3, calls=routing_calls)
print(f"Query: {query_3}\\nIntent: {intent_3}\\nResponse: {response_3}\\n")
""")

md("""
Each response follows its branch's instructions: the technical one asks which
troubleshooting steps were tried, the billing one asks for the account number. The third
shows a limit of routing: "What are your opening hours?" is a clear question, correctly
classified, and the *General Question* branch still only apologizes and asks the customer
to rephrase, because that is all its prompt says. The router did its job; the branch did
not. In a real system this branch would look the hours up, or pass the question to an FAQ
chain like the one of section 2.

### The whole workflow, for many queries at once

`route` runs the three steps for one query and returns a `Routed` value (the raw label,
the intent, the route taken, the response and the call records). Queries are independent
of each other, so `route_many` routes them concurrently.
""")

code("""
from llm_workflows import Routed, WorkflowError, route, route_many

show_source(route)

routed = await route_many(ROUTING_QUERIES)
for outcome in routed:
    if isinstance(outcome, WorkflowError):
        print(f"Failed: {outcome}")
    else:
        print(f"{outcome.query!r}: label {outcome.label!r} -> route {outcome.route!r}")
print()
routed_calls = [call for outcome in routed if isinstance(outcome, Routed) for call in outcome.calls]
print(calls_table(routed_calls, seconds=False))
""")

md("""
Two calls per query: one to classify, one to answer. The classifier's job is easy, so it is
the natural place to try a cheaper model (`classify_intent(query, model="gpt-4.1-nano")`):
one of the benefits of splitting the work. (No recording exists for that model, so try it
with your key.)

### Challenges

- **Robust classification.** Name the categories exactly, describe them (with an example
  or two each when they are close), ask for the label alone, and parse it tolerantly, as
  `normalize_intent` does. Then measure: run the classifier on a set of labelled queries
  before you trust it. Later in the course, *structured outputs* will let us restrict the
  reply to the allowed labels.
- **Ambiguous or out-of-scope intents.** Some messages fit two categories, or none. A
  router needs an explicit answer for both cases (a fallback branch, a clarifying question,
  a human), rather than whatever branch the last `else` happens to be. Let's see what our
  fallback does with a label outside the three categories.
- **Effective prompts for each branch.** Every branch is a prompt (or a handler) of its
  own, to write, test and maintain; the *General Question* branch above shows that a
  correct route is not enough.
""")

code("""
# No model call here: we hand the router labels a classifier could return for an
# out-of-scope or ambiguous message, and see which branch each one takes.
query = "Can you recommend a good pizza place near your office?"
for label in ["Other", "Technical Support or Billing Inquiry"]:
    intent = normalize_intent(label)
    route_name, prompt = choose_prompt(query, intent)
    print(f"label {label!r} -> intent {intent!r} -> route {route_name!r}")

print("\\nThe prompt the fallback route sends:")
print(prompt)
""")

md("""
An unknown or ambiguous label becomes `None`, and `None` takes the `fallback` route, which
asks the customer to rephrase instead of guessing a department. Because the route is named
(`Routed.route == "fallback"`, `Routed.used_fallback`), a production system can count how
often it happens, and a rising count says the categories no longer fit the messages.
""")

# --- Section 5 -------------------------------------------------------------------------------

md("""
## 5. Orchestrator-worker

With orchestrator-worker, an orchestrator breaks down a task and delegates each sub-task
to workers. In the words of Anthropic's
[Building effective agents](https://www.anthropic.com/engineering/building-effective-agents):

> In the orchestrator-workers workflow, a central LLM dynamically breaks down tasks,
> delegates them to worker LLMs, and synthesizes their results.
>
> **When to use this workflow:** This workflow is well-suited for complex tasks where you
> can't predict the subtasks needed (in coding, for example, the number of files that need
> to be changed and the nature of the change in each file likely depend on the task).
> Whereas it's topographically similar, the key difference from parallelization is its
> flexibility—subtasks aren't pre-defined, but determined by the orchestrator based on the
> specific input.

(LangGraph's [workflows tutorial](https://langchain-ai.github.io/langgraphjs/tutorials/workflows/#routing)
builds the same patterns, routing and orchestrator-worker among them, with a graph library.)

Our example is customer care again. One message asks several things at once; the
orchestrator (an LLM call) extracts them as a list of tasks, each with a `query_type` and
the parameters that type needs. Code sends each task to the worker for its type (routing
again, now per task), the workers run concurrently, and a synthesizer (a last LLM call)
turns all their results into one email.

The orchestrator returns its tasks as text that we parse as JSON. Later in the course we
will see **structured outputs**, a way to make the model return data of a given type
directly; here we parse the string ourselves, to see every step.
""")

code('show_diagram("orchestrator_worker")')

md("""
### The orchestrator

The prompt lists the task types and the fields each requires. `parse_tasks` is the gate
after it: it accepts the array (even fenced in Markdown, or wrapped in an object), keeps
each task whose `query_type` is known and whose required fields are present, and reports
the others in `problems` instead of crashing. (A naive `json.loads` would give up on a
fenced reply, and a task missing, say, its `invoice_number` would crash the dispatch with a
`KeyError`.)
""")

code("""
# Orchestrator
from llm_workflows.orchestration import orchestrator, parse_tasks

show_prompts("ORCHESTRATOR")
show_source(orchestrator, parse_tasks)
""")

md("""
### The workers

The billing worker uses the LLM again: it extracts, from the whole message, what the
customer says about this invoice, then opens a (simulated) investigation.
""")

code("""
# Worker for Billing Inquiry
from llm_workflows.orchestration import case_id, handle_billing_worker

show_prompts("BILLING_WORKER_EXTRACTOR")
show_source(handle_billing_worker, case_id)
""")

md("""
The return and status workers call no LLM: they stand for the company's backend (a returns
system, an order database). A worker is whatever serves its task best.
""")

code("""
# Worker for Product Return
from llm_workflows.orchestration import handle_return_worker

show_prompts("RETURN_SHIPPING_INSTRUCTIONS")
show_source(handle_return_worker)
""")

code("""
# Worker for Status Update
from llm_workflows.orchestration import handle_status_worker

show_source(handle_status_worker)
""")

md("""
Simulated backends often draw IDs and statuses at random. Here they are derived from the
input with a hash (`_number`): the same order always gets the same status and tracking
number, so a run can be replayed and tested.

### The synthesizer

The synthesizer formats every worker result as bullet points and asks the LLM for one
friendly email.

When this lesson was first written, its synthesizer had a real-world bug. It formatted
each result by comparing the task name against a list, and one name was misspelt: it
tested `'ProductReturn'` while the return worker writes `'Product Return'`. The return
matched no branch, so its block (the RMA number, the shipping instructions) silently never
reached the prompt, and the email recorded back then answers the invoice and the order and
says nothing at all about the return. No error, no warning: a plausible email that
ignores a third of the customer's message. `format_results` now renders every
result, whatever its type, and below we check the email instead of trusting it.
""")

code("""
# Synthesizer
from llm_workflows.orchestration import format_results, synthesizer

show_prompts("SYNTHESIZER")
show_source(format_results, synthesizer)
""")

md("""
### Putting it together

`process_customer_message` runs the orchestrator, then all the workers at once with
`asyncio.gather`, then the synthesizer. It returns a `CustomerReply`: the tasks, the
problems found on the way, the worker results, one line per worker action, the email and
the call records.
""")

code("""
# Test with a customer query
from llm_workflows import process_customer_message
from llm_workflows.lesson import CUSTOMER_MESSAGE

show_source(process_customer_message)

complex_customer_query = CUSTOMER_MESSAGE
print(f"User query:\\n---\\n{complex_customer_query}\\n---")

customer_reply = await process_customer_message(complex_customer_query)

print("\\nDeconstructed tasks from Orchestrator:")
print(json.dumps([task.to_dict() for task in customer_reply.tasks], indent=2))
print(f"\\nProblems: {customer_reply.problems or 'none'}")
print(f"\\nWorkers run concurrently: {len(customer_reply.results)}")
for action in customer_reply.actions:
    print(f"  {action}")
print("\\nWorker results:")
print(json.dumps(customer_reply.results, indent=2))
print("\\n--- Final Synthesized Response ---")
print(customer_reply.email)
""")

md("""
What to notice:

- The orchestrator found the three tasks, with the right parameters, and found no problem.
- The billing worker's LLM call extracted the concern ("The invoice amount seems higher
  than expected."); the other two workers answered from the simulated backend. The order's
  status, *Delivered*, is derived from the order ID.
- The email covers all three points, the return included.

Where did that email come from? The next cell says, from the call records. In the
recordings shipped with the package, the synthesizer's reply is marked `authored`: it was
**written by hand**, not by a model. The only email recorded when the lesson was written
came from the buggy synthesizer, whose prompt lacked the return, so no model reply to the
fixed prompt was ever recorded; rather than replay a reply to a different prompt, the
project wrote one and labelled it. Run the notebook with your key to see the model's own email (and
`make record` replaces the hand-written one in the recordings).

Then two checks: which results the buggy synthesizer would have dropped (the kind of
silent loss to test for), and whether every ID the workers produced made it into the
email.
""")

code("""
print(calls_table(customer_reply.calls, seconds=False))
explain_replies(customer_reply.calls)

# The buggy synthesizer knew only these task names: any other result was dropped.
buggy_names = ("Billing Inquiry", "ProductReturn", "Status Update")
dropped = [r["task"] for r in customer_reply.results if r["task"] not in buggy_names]
print(f"\\nResults the buggy synthesizer would have left out: {dropped}")

# Every ID a worker produced should reach the customer.
email = customer_reply.email or ""
for result in customer_reply.results:
    ids = [result[k] for k in ("invoice_number", "rma_number", "order_id", "tracking_number")
           if result.get(k, "N/A") != "N/A"]
    missing = [i for i in ids if i not in email]
    print(f"{result['task']:15} {ids} -> {'all in the email' if not missing else f'missing {missing}'}")
""")

md("""
### Pros and cons

**Pros**

- **Flexibility.** The subtasks are decided at run time from the input: a message with one
  request gets one worker, a message with five gets five, in any combination.
- **Concurrency.** Independent workers run at the same time: the customer waits for the
  slowest worker, not for the sum of them.
- **Specialization.** Each worker has its own prompt, model or no LLM at all (our return and
  status workers are plain code standing for a backend), and can be built and tested alone.
- **Clear places for checks.** The plan can be validated before any worker runs
  (`parse_tasks`), and the email against the workers' results.

**Cons**

- **The orchestrator is a single point of failure.** A missed or invented task means a
  wrong answer however good the workers are; its output must be validated, and until
  structured outputs, parsed from free text.
- **More calls, cost and latency** than a single call, and the synthesizer adds a last call
  that waits for every worker.
- **Harder to test and debug.** The plan changes with every input, so the paths the workflow
  takes are many, and errors can compound from step to step.
- **The synthesizer can drop or invent.** It has the last word with the customer; the bug
  above shows how quietly a result can disappear on its way there.
- **The input steers the plan.** A customer's message decides which workers run, so check
  the tasks against what the customer is allowed to ask for (prompt injection).
""")

# --- Wrap-up ---------------------------------------------------------------------------------

md("""
## Wrap-up

Every call of this notebook, added up from the call records:
""")

code("""
every_call = single_calls + chain_calls + faq_result.calls + routing_calls + routed_calls
every_call += customer_reply.calls
t = totals(every_call)
print(
    f"{t.calls} calls, {t.prompt_tokens:,} prompt tokens and {t.completion_tokens:,} completion "
    f"tokens: about ${t.cost_usd:.4f} at the list prices of {PRICES_AS_OF}."
)
""")

md("""
What we built, with nothing but the OpenAI library and plain Python:

- **One big call** is quick to write and hard to trust: we checked its reply and found a
  contradiction in the request itself and a source it did not cite.
- **A chain** splits the work into steps that each do one thing, with code between them to
  check the output. It costs more calls and tokens, and independent steps can run
  concurrently to win the time back.
- **Routing** lets an LLM classify the input and `if`/`elif`/`else` choose the branch, with
  an explicit fallback for what fits no branch.
- **Orchestrator-worker** lets an LLM decide the subtasks at run time, runs the workers
  concurrently and synthesizes one answer, and checks are needed at every boundary.

### References

- [OpenAI Python library: README](https://github.com/openai/openai-python/blob/main/README.md)
  (Chat Completions, async client, errors, retries, timeouts)
- [Prompt chaining](https://www.promptingguide.ai/techniques/prompt_chaining), Prompt
  Engineering Guide
- [Building effective agents](https://www.anthropic.com/engineering/building-effective-agents),
  Anthropic
- [Chain complex prompts for stronger performance](https://docs.anthropic.com/en/docs/build-with-claude/prompt-engineering/chain-prompts),
  Anthropic
- [Prompting best practices for Claude 4 models](https://docs.anthropic.com/en/docs/build-with-claude/prompt-engineering/claude-4-best-practices),
  Anthropic
- [Workflows and agents](https://langchain-ai.github.io/langgraphjs/tutorials/workflows/#routing),
  LangGraph tutorial
- [Lost in the Middle: How Language Models Use Long Contexts](https://arxiv.org/abs/2307.03172),
  Liu et al., 2023

*For maintainers:* this notebook is generated by `scripts/build_notebook.py` (edit the
lesson there); `make record` re-records every reply with a live key and refreshes the
stored outputs.
""")


def build() -> nbformat.NotebookNode:
    """The notebook, without outputs; cell ids are fixed so rebuilding changes no id."""
    nb = nbformat.v4.new_notebook()
    for number, (kind, source) in enumerate(CELLS, 1):
        new = nbformat.v4.new_markdown_cell if kind == "markdown" else nbformat.v4.new_code_cell
        nb.cells.append(new(source, id=f"cell-{number:02d}"))
    return nb


def main() -> int:
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from execute_notebook import execute, write

    nb = build()
    write(nb, NOTEBOOK)
    if "--no-execute" not in sys.argv[1:]:
        execute(NOTEBOOK)
    print(f"wrote {NOTEBOOK.relative_to(ROOT)} ({len(nb.cells)} cells)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
