"""Draw the lesson's four workflow diagrams as PNGs in llm_workflows/diagrams/.

Run: ``python scripts/make_diagrams.py`` (needs Graphviz's ``dot``, e.g. Debian's
``apt-get install graphviz``; only here, at generation time: the PNGs are committed and
shipped as package data, so neither CI nor Colab needs Graphviz). The notebook shows
each PNG from the installed package, which renders the same on GitHub, JupyterLab and
Colab (Colab renders no Mermaid).

Colours: blue boxes are LLM calls, grey boxes are plain Python, green ones are data.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

OUT = Path(__file__).resolve().parent.parent / "llm_workflows" / "diagrams"

STYLE = """
  graph [fontname="DejaVu Sans", fontsize=13, rankdir=LR, nodesep=0.25, ranksep=0.35,
         pad=0.2, bgcolor=white, labelloc=t, labeljust=l];
  node  [fontname="DejaVu Sans", fontsize=11, shape=box, style="rounded,filled",
         color="#555555", fillcolor="#eeeeee", margin="0.12,0.06"];
  edge  [fontname="DejaVu Sans", fontsize=10, color="#555555", arrowsize=0.7];
"""
LLM = 'fillcolor="#cfe2ff", color="#3d6eb3"'
DATA = 'shape=note, fillcolor="#e3f4e1", color="#4f8a4a"'
CODE = 'fillcolor="#eeeeee"'
LEGEND = f"""
  subgraph cluster_legend {{
    label="Legend"; fontsize=10; style="rounded,dashed"; color="#aaaaaa";
    leg_llm [label="LLM call", {LLM}, fontsize=9];
    leg_code [label="Python code", {CODE}, fontsize=9];
    leg_data [label="data", {DATA}, fontsize=9];
    leg_llm -> leg_code -> leg_data [style=invis];
  }}
"""

DIAGRAMS = {
    "single_call": f"""
digraph single_call {{
  {STYLE}
  label="1. One big call: the whole FAQ from one prompt";
  docs [label="3 web pages", {DATA}];
  call [label="single_call_faq\\ngenerate 10 questions\\n+ answer each\\n+ cite sources\\n+ JSON array", {LLM}];
  out [label="one JSON reply", {DATA}];
  check [label="check_single_call\\n(which instructions\\nwere broken?)", {CODE}];
  docs -> call -> out -> check;
  {LEGEND}
}}""",
    "faq_chain": f"""
digraph faq_chain {{
  {STYLE}
  label="2. The FAQ chain: generate questions, then answer and find sources for each question, concurrently";
  docs [label="3 web pages", {DATA}];
  gen [label="generate_questions", {LLM}];
  parse [label="parse_questions\\n(gate: a list\\nof strings?)", {CODE}];
  docs -> gen -> parse;
  subgraph cluster_fan {{
    label="for each question, at most `concurrency` at a time (asyncio.gather + Semaphore)";
    fontsize=11; style="rounded,dashed"; color="#3d6eb3";
    a1 [label="answer_question", {LLM}]; s1 [label="find_sources", {LLM}];
    a2 [label="answer_question", {LLM}]; s2 [label="find_sources", {LLM}];
    a3 [label="answer_question", {LLM}]; s3 [label="find_sources", {LLM}];
    g1 [label="titles gate", {CODE}]; g2 [label="titles gate", {CODE}]; g3 [label="titles gate", {CODE}];
    a1 -> s1 -> g1; a2 -> s2 -> g2; a3 -> s3 -> g3;
  }}
  parse -> a1 [label="question 1"];
  parse -> a2 [label="question 2"];
  parse -> a3 [label="... question 10"];
  faq [label="FAQResult\\nitems, failures, calls", {DATA}];
  g1 -> faq; g2 -> faq; g3 -> faq;
  {LEGEND}
}}""",
    "routing": f"""
digraph routing {{
  {STYLE}
  label="3. Routing: an LLM classifies the query, Python if/elif/else picks the branch";
  q [label="customer query", {DATA}];
  cls [label="classify_intent", {LLM}];
  norm [label="normalize_intent\\n(label -> intent\\nor None)", {CODE}];
  choose [label="choose_prompt\\nif / elif / else", shape=diamond, style=filled, {CODE}];
  tech [label="Technical Support\\nprompt", {LLM}];
  bill [label="Billing Inquiry\\nprompt", {LLM}];
  gen [label="General Question\\nprompt", {LLM}];
  fb [label="fallback: unknown label\\n-> ask to rephrase", {LLM}];
  r [label="response", {DATA}];
  q -> cls -> norm -> choose;
  choose -> tech [label="Technical Support"];
  choose -> bill [label="Billing Inquiry"];
  choose -> gen [label="General Question"];
  choose -> fb [label="anything else"];
  tech -> r; bill -> r; gen -> r; fb -> r;
  {LEGEND}
}}""",
    "orchestrator_worker": f"""
digraph orchestrator_worker {{
  {STYLE}
  label="4. Orchestrator-worker: the tasks are decided at run time by the orchestrator";
  msg [label="customer message", {DATA}];
  orch [label="orchestrator\\n(tasks as JSON text)", {LLM}];
  parse [label="parse_tasks\\n(gate: known query_type,\\nrequired fields)", {CODE}];
  subgraph cluster_workers {{
    label="one worker per task, all at once (asyncio.gather)";
    fontsize=11; style="rounded,dashed"; color="#3d6eb3";
    bill [label="billing worker\\n(LLM extracts the concern)", {LLM}];
    ret [label="return worker\\n(simulated backend)", {CODE}];
    stat [label="status worker\\n(simulated backend)", {CODE}];
  }}
  fmt [label="format_results\\n(every result)", {CODE}];
  syn [label="synthesizer", {LLM}];
  email [label="one email", {DATA}];
  msg -> orch -> parse;
  parse -> bill [label="BillingInquiry"];
  parse -> ret [label="ProductReturn"];
  parse -> stat [label="StatusUpdate"];
  bill -> fmt; ret -> fmt; stat -> fmt;
  fmt -> syn -> email;
  {LEGEND}
}}""",
}


def main() -> int:
    dot = shutil.which("dot")
    if dot is None:
        print("make_diagrams: Graphviz 'dot' not found; install it (apt-get install graphviz)")
        return 1
    OUT.mkdir(parents=True, exist_ok=True)
    for name, source in DIAGRAMS.items():
        target = OUT / f"{name}.png"
        subprocess.run(
            [dot, "-Tpng", "-Gdpi=96", "-o", str(target)], input=source.encode(), check=True
        )
        print(f"wrote {target.relative_to(OUT.parent.parent)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
