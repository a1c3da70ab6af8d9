"""Evaluate the rules tagger against the hand-labelled set in tests/data/tagging/.

    python bench/tagging_eval.py                 # dev and held-out, separately (each file, then together)
    python bench/tagging_eval.py --split dev --errors   # what the rules get wrong on dev (for tuning)
    python bench/tagging_eval.py --split heldout --classifier DIR   # the fine-tuned classifier's tags

``--errors`` refuses the held-out split: its messages are never read while rules are tuned.

Prints tier accuracy, Cohen's kappa, the tier confusion matrix and per-signal precision / recall / F1
(a signal is present when its score is above SIGNAL_PRESENT_ABOVE), plus the macro F1 over the six signals,
and the tier accuracy on the messages that exemplify each ambiguity rule of docs/ace_tiers.md (listed in
tests/data/tagging/ambiguity/examples.jsonl).
Baseline in the same run: the majority-tier guess (accuracy) and "no signal ever" (F1 = 0).

``--classifier DIR`` scores the fine-tuned local classifier trained into DIR
(``python -m daemon.tagging.train_classifier``): the rules' tags with the tier and signals it combines
(``daemon/tagging/finetuned.py``), the way the daemon's model backend tags; the rules' own tier accuracy
and macro signal F1 are printed beside it. It was trained on the dev split, so only its held-out figures
say anything.
"""

from __future__ import annotations

import argparse
import functools
import json
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

from daemon.tagging import RulesTagger
from schemas import SIGNAL_NAMES, SIGNAL_PRESENT_ABOVE, AgentMessage, Tags

DATA = Path(__file__).resolve().parent.parent / "tests" / "data" / "tagging"
#: split -> its files. Rules may be tuned on "dev" only; "heldout" is reported, never looked into.
SPLITS = {
    "dev": tuple(DATA / f"{name}.jsonl" for name in ("dev", *(f"dev_{c}" for c in "bcdefghijklmnopqrstu"))),
    "heldout": tuple(DATA / f"{name}.jsonl" for name in ("heldout", *(f"heldout_{c}" for c in "bcdefghijk"))),
}
TIERS = ("A", "C", "E")
#: The messages an ambiguity rule decides (message_id, rule, and why), chosen after the labels were written.
AMBIGUITY_EXAMPLES = DATA / "ambiguity" / "examples.jsonl"
#: The ambiguity rules of docs/ace_tiers.md, as printed.
AMBIGUITY_RULES = {
    1: "architecture as dialogue is A",
    2: "a deliverable amid dialogue is E",
    3: "implementing a decision is E",
}
#: seconds the classifier's encoder ran, messages it read (--classifier)
ENCODER_TIME = [0.0, 0]


def load(path: Path) -> list[dict[str, Any]]:
    """The labelled lines of one split, in file order."""
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


@functools.cache
def ambiguity_rules() -> dict[str, int]:
    """message_id -> the ambiguity rule (1, 2 or 3) that decides its tier, for the annotated messages."""
    return {d["message_id"]: d["rule"] for d in load(AMBIGUITY_EXAMPLES)}


def tag_lines(lines: list[dict[str, Any]], history: int = 20) -> list[Tags]:
    """Tag every line through RulesTagger.tag_batch, one conversation at a time, in order."""
    tagger = RulesTagger(history=history)
    messages = [
        AgentMessage.model_validate({k: v for k, v in d.items() if k != "label"}, strict=False) for d in lines
    ]
    tags = tagger.tag_batch(messages)
    if any(t is None for t in tags):
        raise SystemExit("the tagger returned None for a labelled message")
    return [t for t in tags if t is not None]


def classifier_tags(classifier: Any, lines: list[dict[str, Any]], tags: list[Tags]) -> list[Tags]:
    """``tags`` (the rules') with the tier and signals the fine-tuned classifier combines, as its backend tags
    them."""
    started = time.perf_counter()
    out: list[Tags] = classifier.decide(tags, [d["content"] for d in lines])
    ENCODER_TIME[0] += time.perf_counter() - started
    ENCODER_TIME[1] += len(lines)
    return out


def present_signals(tags: Tags) -> frozenset[str]:
    """The signals ``tags`` counts as present (score above SIGNAL_PRESENT_ABOVE)."""
    return frozenset(n for n in SIGNAL_NAMES if getattr(tags.signals, n) > SIGNAL_PRESENT_ABOVE)


def cohen_kappa(gold: list[str], pred: list[str]) -> float:
    """Cohen's kappa between two labelings of the same items."""
    n = len(gold)
    observed = sum(g == p for g, p in zip(gold, pred, strict=True)) / n
    gc, pc = Counter(gold), Counter(pred)
    expected = sum(gc[k] * pc[k] for k in set(gold) | set(pred)) / (n * n)
    return 1.0 if expected == 1 else (observed - expected) / (1 - expected)


def prf(tp: int, fp: int, fn: int) -> tuple[float, float, float]:
    """Precision, recall, F1 (0 where undefined)."""
    p = tp / (tp + fp) if tp + fp else 0.0
    r = tp / (tp + fn) if tp + fn else 0.0
    f = 2 * p * r / (p + r) if p + r else 0.0
    return p, r, f


def evaluate(lines: list[dict[str, Any]], tags: list[Tags]) -> dict[str, Any]:
    """Metrics of ``tags`` against the lines' labels."""
    gold = [d["label"]["tier"] for d in lines]
    pred = [t.tier for t in tags]
    acc = sum(g == p for g, p in zip(gold, pred, strict=True)) / len(gold)
    majority = Counter(gold).most_common(1)[0][1] / len(gold)
    confusion = {g: {p: 0 for p in TIERS} for g in TIERS}
    for g, p in zip(gold, pred, strict=True):
        confusion[g][p] += 1
    signals: dict[str, dict[str, float]] = {}
    for name in SIGNAL_NAMES:
        tp = fp = fn = 0
        for d, t in zip(lines, tags, strict=True):
            truth = name in d["label"]["signals"]
            said = getattr(t.signals, name) > SIGNAL_PRESENT_ABOVE
            tp += truth and said
            fp += said and not truth
            fn += truth and not said
        p, r, f = prf(tp, fp, fn)
        signals[name] = {"precision": p, "recall": r, "f1": f, "support": tp + fn}
    macro = sum(s["f1"] for s in signals.values()) / len(signals)
    rule_of = ambiguity_rules()
    ambiguity: dict[int, dict[str, float]] = {}
    for rule in AMBIGUITY_RULES:
        hits = [
            g == p for d, g, p in zip(lines, gold, pred, strict=True) if rule_of.get(d["message_id"]) == rule
        ]
        ambiguity[rule] = {"n": len(hits), "accuracy": sum(hits) / len(hits) if hits else 0.0}
    return {
        "n": len(lines),
        "tier_accuracy": acc,
        "kappa": cohen_kappa(gold, pred),
        "majority_baseline": majority,
        "confusion": confusion,
        "signals": signals,
        "macro_f1": macro,
        "ambiguity": ambiguity,
    }


def report(name: str, m: dict[str, Any]) -> None:
    """Print one split's metrics."""
    print(f"== {name}: {m['n']} messages")
    ratio = m["tier_accuracy"] / m["majority_baseline"]
    print(
        f"tier accuracy {m['tier_accuracy']:.3f}  kappa {m['kappa']:.3f}  "
        f"(baseline majority tier {m['majority_baseline']:.3f}, ratio {ratio:.2f}x)"
    )
    print(
        "confusion (rows gold, cols predicted): "
        + "  ".join(f"{g}: " + " ".join(f"{p}={m['confusion'][g][p]}" for p in TIERS) for g in TIERS)
    )
    print(f"{'signal':28} {'P':>6} {'R':>6} {'F1':>6} {'support':>8}")
    for sig, s in m["signals"].items():
        print(f"{sig:28} {s['precision']:6.3f} {s['recall']:6.3f} {s['f1']:6.3f} {s['support']:8d}")
    print(f"macro signal F1 {m['macro_f1']:.3f}  (baseline 'no signal' 0.000)")
    print(
        "ambiguity rules, tier accuracy: "
        + "  ".join(
            f"{rule} ({AMBIGUITY_RULES[rule]}) {a['accuracy']:.3f} of {a['n']:.0f}"
            for rule, a in m["ambiguity"].items()
            if a["n"]
        )
    )


def print_errors(lines: list[dict[str, Any]], tags: list[Tags]) -> None:
    """Each wrong tier or signal, with the evidence that produced it."""
    for d, t in zip(lines, tags, strict=True):
        said = present_signals(t)
        truth = set(d["label"]["signals"])
        if d["label"]["tier"] != t.tier or said != truth:
            print(
                f"--- {d['message_id']} gold {d['label']['tier']} {sorted(truth)}  "
                f"got {t.tier} ({t.tier_rule}) {sorted(said)}"
            )
            print("   ", d["content"][:160].replace("\n", " "))
            print("    votes", t.evidence["tier_votes"], "sig", t.signals.model_dump())
            print("    markers", t.evidence["markers"], t.evidence["signals"])


def main(argv: list[str] | None = None) -> int:
    """Entry point."""
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--split", choices=["dev", "heldout", "both"], default="both")
    parser.add_argument("--errors", action="store_true", help="print every disagreement with its evidence")
    parser.add_argument("--json", action="store_true", help="print the metrics as JSON")
    parser.add_argument(
        "--classifier", type=Path, metavar="DIR", help="score the fine-tuned classifier trained into DIR"
    )
    args = parser.parse_args(argv)
    names = ["dev", "heldout"] if args.split == "both" else [args.split]
    classifier = None
    if args.classifier is not None:
        from daemon.tagging.finetuned import ClassifierUnavailable, FineTunedTagger

        try:
            classifier = FineTunedTagger(args.classifier)
        except ClassifierUnavailable as exc:
            parser.error(str(exc))
    if args.errors and "heldout" in names:
        parser.error("--errors is for tuning: use it with --split dev only (held-out messages stay unread)")
    out = {}
    for name in names:
        all_lines: list[dict[str, Any]] = []
        all_tags: list[Tags] = []
        rules_only: list[Tags] = []  # the rules' own tags: the baseline of --classifier, same run
        ENCODER_TIME[:] = [0.0, 0]
        for path in SPLITS[name]:
            lines = load(path)
            tags = tag_lines(lines)  # a fresh tagger per file: files share no conversation
            if classifier is not None:
                rules_only += tags
                tags = classifier_tags(classifier, lines, tags)
            all_lines += lines
            all_tags += tags
            out[path.name] = evaluate(lines, tags)
            if not args.json:
                report(path.name, out[path.name])
            if args.errors:
                print_errors(lines, tags)
        out[name] = evaluate(all_lines, all_tags)
        if classifier is not None:
            rules = evaluate(all_lines, rules_only)
            out[name]["rules_tier_accuracy"] = rules["tier_accuracy"]
            out[name]["rules_macro_f1"] = rules["macro_f1"]
        if not args.json:
            report(f"{name} (all its files)", out[name])
            if classifier is not None:
                print(
                    f"classifier {args.classifier} (trained on the dev split): tier accuracy "
                    f"{out[name]['tier_accuracy']:.3f}, macro signal F1 {out[name]['macro_f1']:.3f}; "
                    f"the rules alone in this run: {rules['tier_accuracy']:.3f} and {rules['macro_f1']:.3f}"
                )
                rate = ENCODER_TIME[1] / ENCODER_TIME[0]
                print(f"encoder: {rate:.0f} messages/s in batches of 32 on this machine")
    if args.json:
        print(json.dumps(out, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
