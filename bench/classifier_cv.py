"""Cross-validate the fine-tuned classifier by writer, on the development files only, and derive the signal
weight and thresholds that ``daemon/tagging/finetuned.py`` uses.

    python bench/classifier_cv.py                     # 3 folds, seed 0 (about an hour on a 2-core CPU)
    python bench/classifier_cv.py --seeds 0,1,2       # what the constants were fit on (GPU: ~2 minutes)

Each development file is one writer. The files are dealt into ``--folds`` folds (sorted by name, file i to
fold i mod folds); for each fold, a network is trained with ``train_classifier.fit`` (the committed recipe)
on the other folds and predicts the fold's messages, so every message is predicted by a model that never
saw its writer. The rules' tags of the same messages (``bench/tagging_eval.tag_lines``, the evaluation's
history) are the other half of each combination. Prints, for the same messages:

- tier accuracy: the rules alone (baseline), the encoder alone, the two combined (``finetuned.combine``);
- macro signal F1: the rules alone (baseline), the encoder alone at 0.5 and at its best threshold per
  signal, and the combination at each ``--weights`` value, with each signal's threshold fit on the other
  folds and applied to the held one;
- the thresholds fit on all predictions (all seeds together) at the weight in use, beside the ones in use.

The rules' lexicons and tier model were tuned on these same writers, so every figure that includes the rules
is optimistic; only the held-out files (``bench/tagging_eval.py --split heldout --classifier DIR``) say how
the result carries to new writers. Never reads a held-out file.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.tagging_eval import SPLITS, load, tag_lines
from schemas import SIGNAL_NAMES, SIGNAL_PRESENT_ABOVE

#: Candidate thresholds on the combined value (and the encoder's probability).
GRID = tuple(round(0.10 + 0.01 * i, 2) for i in range(81))


def f1(truth: list[bool], said: list[bool]) -> float:
    """F1 of ``said`` against ``truth`` (0 when nothing is right)."""
    tp = sum(t and s for t, s in zip(truth, said, strict=True))
    wrong = sum(t != s for t, s in zip(truth, said, strict=True))
    return 2 * tp / (2 * tp + wrong) if tp else 0.0


def best_threshold(truth: list[bool], values: list[float]) -> float:
    """The grid threshold whose ``value > threshold`` gives the highest F1 (the lowest such, on ties)."""
    return max(GRID, key=lambda t: (f1(truth, [v > t for v in values]), -t))


def cross_fold_f1(truth: list[bool], values: list[float], folds: list[int]) -> float:
    """F1 when each fold is thresholded at the threshold fit on the other folds."""
    said = [False] * len(truth)
    for fold in sorted(set(folds)):
        rest = [i for i, f in enumerate(folds) if f != fold]
        threshold = best_threshold([truth[i] for i in rest], [values[i] for i in rest])
        for i, f in enumerate(folds):
            if f == fold:
                said[i] = values[i] > threshold
    return f1(truth, said)


def main(argv: list[str] | None = None) -> int:
    """Entry point."""
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--folds", type=int, default=3)
    parser.add_argument("--seeds", default="0", help="comma-separated training seeds (default 0)")
    parser.add_argument("--weights", default="0.3,0.4,0.5", help="encoder weights to compare for the signals")
    parser.add_argument("--epochs", type=int, default=None, help="default: the training recipe's")
    parser.add_argument("--max-tokens", type=int, default=None, help="default: the training recipe's")
    parser.add_argument(
        "--per-file",
        type=int,
        default=None,
        metavar="N",
        help="only the first N messages of each file (a smoke run)",
    )
    parser.add_argument("--json", type=Path, metavar="FILE", help="also write every prediction to FILE")
    args = parser.parse_args(argv)
    try:
        seeds = [int(s) for s in args.seeds.split(",")]
        weights = [float(w) for w in args.weights.split(",")]
    except ValueError:
        parser.error("--seeds and --weights take comma-separated numbers")
    if args.folds < 2 or not all(0.0 <= w <= 1.0 for w in weights):
        parser.error("--folds must be at least 2 and each weight within 0..1")

    from daemon.tagging import finetuned
    from daemon.tagging.finetuned import TIERS, Classifier, combine, rules_probabilities, signal_value
    from daemon.tagging.train_classifier import EPOCHS, MAX_TOKENS, Example, example, fit

    epochs, max_tokens = args.epochs or EPOCHS, args.max_tokens or MAX_TOKENS
    examples: list[Example] = []
    folds: list[int] = []
    rules_tier: list[tuple[float, float, float]] = []
    rules_scores: list[list[int]] = []
    rules_tiers: list[str] = []
    for index, path in enumerate(sorted(SPLITS["dev"], key=lambda p: p.name)):
        lines = load(path)[: args.per_file]
        for d, tags in zip(lines, tag_lines(lines), strict=True):
            examples.append(example(d))
            folds.append(index % args.folds)
            rules_tier.append(rules_probabilities(tags))
            rules_tiers.append(tags.tier)
            rules_scores.append([getattr(tags.signals, n) for n in SIGNAL_NAMES])
    n = len(examples)
    gold_tiers = [TIERS[tier] for _, tier, _ in examples]
    truth = [[bool(signals[k]) for _, _, signals in examples] for k in range(len(SIGNAL_NAMES))]
    rules_said = [[s[k] > SIGNAL_PRESENT_ABOVE for s in rules_scores] for k in range(len(SIGNAL_NAMES))]
    rules_f1 = [f1(truth[k], said) for k, said in enumerate(rules_said)]
    rules_acc = sum(g == r for g, r in zip(gold_tiers, rules_tiers, strict=True)) / n
    print(f"{n} development messages, {args.folds} folds by writer, seeds {seeds}, {epochs} epochs")
    print(f"baseline, the rules alone: tier accuracy {rules_acc:.3f}, macro signal F1 {mean(rules_f1):.3f}")

    runs: list[dict[str, Any]] = []
    for seed in seeds:
        started = time.perf_counter()
        tiers: list[tuple[float, float, float]] = [(0.0, 0.0, 0.0)] * n
        signal_probs: list[tuple[float, ...]] = [()] * n
        for fold in range(args.folds):
            train = [e for e, f in zip(examples, folds, strict=True) if f != fold]
            held = [i for i, f in enumerate(folds) if f == fold]
            network, _, _ = fit(train, epochs, max_tokens, seed, log=lambda _: None)
            model = Classifier(network, finetuned.load_tokenizer(), {"max_tokens": max_tokens}, "cross-val")
            for i, prediction in zip(held, model.predict([examples[i][0] for i in held]), strict=True):
                tiers[i], signal_probs[i] = prediction.tiers, prediction.signals
        seconds = time.perf_counter() - started
        best_tiers = [TIERS[max(range(3), key=t.__getitem__)] for t in tiers]
        encoder_acc = sum(g == b for g, b in zip(gold_tiers, best_tiers, strict=True)) / n
        both = [combine(t, r).tier for t, r in zip(tiers, rules_tier, strict=True)]
        both_acc = sum(g == b for g, b in zip(gold_tiers, both, strict=True)) / n
        at_half, at_best = [], []
        for k in range(len(SIGNAL_NAMES)):
            probs = [p[k] for p in signal_probs]
            at_half.append(f1(truth[k], [p > 0.5 for p in probs]))
            best = best_threshold(truth[k], probs)
            at_best.append(f1(truth[k], [p > best for p in probs]))
        print(
            f"seed {seed} ({seconds:.0f} s): tier accuracy encoder {encoder_acc:.3f}, "
            f"combined {both_acc:.3f}; "
            f"macro signal F1 encoder {mean(at_half):.3f} at 0.5, {mean(at_best):.3f} at its best thresholds"
        )
        for weight in weights:
            pairs = list(zip(signal_probs, rules_scores, strict=True))
            per_signal = [
                cross_fold_f1(truth[k], [signal_value(p[k], s[k], weight) for p, s in pairs], folds)
                for k in range(len(SIGNAL_NAMES))
            ]
            shown = " ".join(f"{v:.3f}" for v in per_signal)
            print(f"  combined, encoder weight {weight}: macro signal F1 {mean(per_signal):.3f} ({shown})")
        runs.append({"seed": seed, "tiers": tiers, "signals": signal_probs})

    weight = finetuned.SIGNAL_ENCODER_WEIGHT
    print(f"thresholds at encoder weight {weight}, fit on every seed's predictions (in use in brackets):")
    for k, name in enumerate(SIGNAL_NAMES):
        values = [
            signal_value(run["signals"][i][k], rules_scores[i][k], weight) for run in runs for i in range(n)
        ]
        pooled_truth = truth[k] * len(runs)
        threshold = best_threshold(pooled_truth, values)
        score = f1(pooled_truth, [v > threshold for v in values])
        print(f"  {name:28} {threshold:.2f} ({finetuned.SIGNAL_THRESHOLDS[name]:.2f})  F1 {score:.3f}")
    if args.json:
        args.json.write_text(json.dumps({"folds": folds, "runs": runs}), encoding="utf-8")
    return 0


def mean(values: list[float]) -> float:
    """The arithmetic mean."""
    return sum(values) / len(values)


if __name__ == "__main__":
    sys.exit(main())
