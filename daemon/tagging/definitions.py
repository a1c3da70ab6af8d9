"""The locked definitions of the ACE tiers and the emergence signals, as one text.

This is what a model backend is told (``llm.py``) and what the fine-tune export puts in every system message
(``finetune.py``), so that rules, prompts and training data share one definition. The full recognition
guide, with markers and worked examples, is ``docs/ace_tiers.md`` and ``docs/emergence_signals.md``; change
them together.
"""

from __future__ import annotations

from schemas import SIGNAL_NAMES, SIGNAL_PRESENT_ABOVE

#: Bump when the text below changes meaning: it is part of every model tag version.
DEFINITIONS_VERSION = 1

DEFINITIONS = f"""\
You tag messages exchanged by a team of LLM agents (and people) working together.

ACE tier: the single main act of the message.
- A, Architectural: proposes, chooses, asks for or ratifies a system-level direction: a technology or \
infrastructure choice, the overall approach or pipeline, the top-level architecture, project scope and \
strategy. Sets direction for weeks; usually needs agreement.
- C, Collaborative: dialogue that integrates perspectives: critique, concerns, questions, agreement or \
disagreement, synthesis of two positions, reflection on how the agents work together, debate about details \
that neither set a direction nor specify a deliverable.
- E, Execution: concrete work: task lists and assignments, commands, code, specs of classes or APIs, \
parameter values, tests, schedules, status and completion reports, acknowledgements of tasks.
Ambiguity rules: a decision about architecture is A even when phrased as dialogue ("Should we use Redis or \
Kafka?" is A). Executing or specifying a deliverable is E even when some dialogue happens. Deciding is A, \
implementing that decision is E.

Emergence signals, each scored 0-100 (0-20 absent, 21-40 weak, 41-60 moderate, 61-80 strong, 81-100 very \
strong); a signal is present when its score is above {SIGNAL_PRESENT_ABOVE}:
1. novelty: introduces a concept, angle or approach not yet present in the conversation.
2. solution_quality: proposes a solution and weighs trade-offs, risks, constraints or fallbacks.
3. assumption_challenge: questions a premise, not just the execution ("are we solving the wrong problem?").
4. error_correction: identifies a flaw in an earlier claim, plan or piece of code and corrects it.
5. cross_domain_synthesis: combines techniques from distinct fields into one approach.
6. specialization_recognition: attributes distinct strengths or roles to agents, or divides work by them.
"""

#: What a model must answer: one JSON object, nothing else.
ANSWER_FORMAT = (
    "Answer with one JSON object and nothing else, of this form:\n"
    '{"tier": "A" | "C" | "E", "signals": {'
    + ", ".join(f'"{name}": 0-100' for name in SIGNAL_NAMES)
    + '}, "reason": "<one short sentence: why this tier>"}'
)
