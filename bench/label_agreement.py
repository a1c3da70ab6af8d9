"""How well do people (here: independent annotators) agree on the labels the tagger is held against?

    python bench/label_agreement.py

``tests/data/tagging/agreement/labels_*.jsonl`` hold second and third labellings of a sample of the
development messages (whole conversations, 2-3 from each development file), made by annotators who read only
the two definition documents and the messages, without the original labels. This prints, for every pair of
labellings (the writers' own labels and each annotator's), the tier agreement, Cohen's kappa and the macro
signal F1 between them, and then the rules tagger against each labelling on the same messages. Agreement
between careful people is the ceiling a tagger can be expected to reach against any one of them: a goal
above it measures the labeller as much as the tagger.

The tagger's tier model was trained on the writers' labels of these very messages, so its figure against
them is flattered; against the annotators it is not.
"""

from __future__ import annotations

import json
import sys
from itertools import combinations
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT / "bench") not in sys.path:  # run as a script from anywhere
    sys.path.insert(0, str(ROOT / "bench"))
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import tagging_eval  # noqa: E402

from schemas import SIGNAL_NAMES  # noqa: E402

AGREEMENT = tagging_eval.DATA / "agreement"

#: a labelling: message_id -> (tier, set of signals present)
Labelling = dict[str, tuple[str, frozenset[str]]]


def load_annotations(path: Path) -> Labelling:
    """One annotator's file: ``{"message_id", "tier", "signals"}`` per line."""
    out: Labelling = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        if line.strip():
            item = json.loads(line)
            out[item["message_id"]] = (item["tier"], frozenset(item["signals"]))
    return out


def sample_lines(ids: list[str]) -> list[dict[str, Any]]:
    """The labelled development lines with these ids, in the order given."""
    by_id = {d["message_id"]: d for path in tagging_eval.SPLITS["dev"] for d in tagging_eval.load(path)}
    missing = [i for i in ids if i not in by_id]
    if missing:
        raise SystemExit(f"not development messages: {missing[:5]}")
    return [by_id[i] for i in ids]


def compare(a: Labelling, b: Labelling, ids: list[str]) -> dict[str, float]:
    """Tier agreement, Cohen's kappa and macro signal F1 of ``b`` against ``a`` on ``ids`` (F1 of one
    binary signal does not depend on which side is called the truth)."""
    ta, tb = [a[i][0] for i in ids], [b[i][0] for i in ids]
    f1s = []
    for name in SIGNAL_NAMES:
        tp = sum(name in a[i][1] and name in b[i][1] for i in ids)
        fp = sum(name not in a[i][1] and name in b[i][1] for i in ids)
        fn = sum(name in a[i][1] and name not in b[i][1] for i in ids)
        # neither side ever saw the signal: they agree on it entirely (prf would say 0)
        f1s.append(tagging_eval.prf(tp, fp, fn)[2] if tp + fp + fn else 1.0)
    return {
        "tier_agreement": sum(x == y for x, y in zip(ta, tb, strict=True)) / len(ids),
        "kappa": tagging_eval.cohen_kappa(ta, tb),
        "macro_f1": sum(f1s) / len(f1s),
    }


def main(argv: list[str] | None = None) -> int:
    """Entry point."""
    paths = sorted(AGREEMENT.glob("labels_*.jsonl"))
    if not paths:
        print(f"error: no labels_*.jsonl in {AGREEMENT}", file=sys.stderr)
        return 2
    labellings: dict[str, Labelling] = {p.stem: load_annotations(p) for p in paths}
    ids = list(next(iter(labellings.values())))
    if any(set(lab) != set(ids) for lab in labellings.values()):
        raise SystemExit("the annotation files do not cover the same messages")
    lines = sample_lines(ids)
    labellings = {
        "writers": {d["message_id"]: (d["label"]["tier"], frozenset(d["label"]["signals"])) for d in lines},
        **labellings,
    }
    tags = tagging_eval.tag_lines(lines)
    labellings["tagger"] = {
        d["message_id"]: (t.tier, tagging_eval.present_signals(t)) for d, t in zip(lines, tags, strict=True)
    }
    print(f"{len(ids)} development messages in {len({d['conversation_id'] for d in lines})} conversations")
    print(f"{'pair':34} {'tier agreement':>15} {'kappa':>7} {'macro signal F1':>16}")
    people = [name for name in labellings if name != "tagger"]
    for x, y in [*combinations(people, 2), *(("tagger", p) for p in people)]:
        m = compare(labellings[x], labellings[y], ids)
        print(f"{x + ' vs ' + y:34} {m['tier_agreement']:15.3f} {m['kappa']:7.3f} {m['macro_f1']:16.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
