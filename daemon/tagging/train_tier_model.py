"""Train the linear tier model (``daemon/tagging/tier_model.json``) on the labelled development files.

    python -m daemon.tagging.train_tier_model [--data DIR] [--out FILE]
    python -m daemon.tagging.train_tier_model --cv     # leave-one-file-out accuracy; writes nothing
    python -m daemon.tagging.train_tier_model --curve  # accuracy by number of training writers

Reads every ``dev*.jsonl`` in ``--data`` (never a held-out file), computes each message's features exactly as
the tagger does (:func:`daemon.tagging.tier_model.tier_features` over the rules' markers and votes), and fits
a multinomial logistic regression by full-batch gradient descent: 300 epochs, step 0.5, L2 0.01, features
seen in at least two messages. These settings were chosen by leave-one-file-out cross-validation on the
development files (each file is another writer). Needs numpy (the ``train`` extra); the trained model is
applied without it. Deterministic: the same files give the same weights.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
from pathlib import Path
from typing import Any

from daemon.tagging.markers import DEFAULT_INDEX
from daemon.tagging.rules import classify_tier
from daemon.tagging.text import extract
from daemon.tagging.tier_model import TIERS, TierModel, tier_features

VERSION = "linear-1"
EPOCHS = 300
STEP = 0.5
L2 = 0.01
MIN_DF = 2


Row = tuple[dict[str, float], int]


def training_rows(paths: list[Path]) -> list[Row]:
    """(features, tier index) of every labelled message in ``paths``."""
    return [row for path in paths for row in file_rows(path)]


def file_rows(path: Path) -> list[Row]:
    """(features, tier index) of every labelled message in one file."""
    rows = []
    for line in path.read_text(encoding="utf-8").splitlines():
        if not line.strip():
            continue
        item = json.loads(line)
        features = extract(item["content"])
        hits = DEFAULT_INDEX.match(features)
        decision = classify_tier(features, hits)
        fv = tier_features(features, hits, decision.votes, decision.tier)
        rows.append((fv, TIERS.index(item["label"]["tier"])))
    return rows


def fit(rows: list[Row], l2: float = L2, min_df: int = MIN_DF) -> TierModel:
    """Gradient descent on the mean cross-entropy plus ``l2 / 2 * |W|^2`` (bias not penalised), over the
    features seen in at least ``min_df`` messages."""
    import numpy as np

    df: dict[str, int] = {}
    for fv, _ in rows:
        for key in fv:
            df[key] = df.get(key, 0) + 1
    vocab = {k: i for i, k in enumerate(sorted(k for k, c in df.items() if c >= min_df))}
    x = np.zeros((len(rows), len(vocab)))
    for i, (fv, _) in enumerate(rows):
        for key, value in fv.items():
            j = vocab.get(key)
            if j is not None:
                x[i, j] = value
    y = np.eye(len(TIERS))[[tier for _, tier in rows]]
    w = np.zeros((len(vocab), len(TIERS)))
    b = np.zeros(len(TIERS))
    for _ in range(EPOCHS):
        z = x @ w + b
        z -= z.max(axis=1, keepdims=True)
        p = np.exp(z)
        p /= p.sum(axis=1, keepdims=True)
        g = (p - y) / len(rows)
        w -= STEP * (x.T @ g + l2 * w)
        b -= STEP * g.sum(axis=0)
    weights = {key: tuple(float(v) for v in w[j]) for key, j in vocab.items()}
    return TierModel(VERSION, (float(b[0]), float(b[1]), float(b[2])), weights)


def cross_validate(
    paths: list[Path], l2: float = L2, min_df: int = MIN_DF
) -> list[tuple[str, int, int, int]]:
    """Leave one file (one writer) out: train on the others, decide the left-out file's tiers. Per file:
    (name, messages, right by the model, right by the rules' votes alone)."""
    by_file = {path.name: file_rows(path) for path in paths}
    out = []
    for name, held in by_file.items():
        model = fit([row for other, rows in by_file.items() if other != name for row in rows], l2, min_df)
        right = sum(model.decide_features(fv).tier == TIERS[tier] for fv, tier in held)
        votes = sum(fv.get("rule:" + TIERS[tier]) == 1.0 for fv, tier in held)
        out.append((name, len(held), right, votes))
    return out


def learning_curve(
    paths: list[Path], sizes: list[int], scored_files: int = 10, seed: int = 0
) -> list[tuple[int, int, int]]:
    """How accuracy grows with the number of writers trained on: for each size ``k``, each of
    ``scored_files`` files (drawn once, with ``seed``) is scored by a model trained on ``k`` other files
    drawn at random. Per size: (k, messages scored, right). Deterministic for a given ``seed``."""
    import random

    by_file = {path.name: file_rows(path) for path in paths}
    names = sorted(by_file)
    rng = random.Random(seed)  # noqa: S311 (drawing files for an evaluation, not secrets)
    scored = rng.sample(names, min(scored_files, len(names)))
    out = []
    for k in sizes:
        if not 1 <= k < len(names):
            raise ValueError(f"cannot train on {k} of {len(names)} files and score another")
        right = total = 0
        for name in scored:
            train = rng.sample([n for n in names if n != name], k)
            model = fit([row for n in train for row in by_file[n]])
            right += sum(model.decide_features(fv).tier == TIERS[tier] for fv, tier in by_file[name])
            total += len(by_file[name])
        out.append((k, total, right))
    return out


def dump(data: dict[str, Any]) -> str:
    """JSON with one feature per line (readable diffs when the model is retrained)."""
    head = {k: v for k, v in data.items() if k != "weights"}
    lines = [json.dumps(head, ensure_ascii=False)[:-1] + ', "weights": {']
    items = sorted(data["weights"].items())
    for i, (feature, weights) in enumerate(items):
        comma = "," if i < len(items) - 1 else ""
        lines.append(f"  {json.dumps(feature, ensure_ascii=False)}: {json.dumps(list(weights))}{comma}")
    lines.append("}}")
    return "\n".join(lines) + "\n"


def dev_files(data: Path) -> list[Path]:
    """The development files in ``data`` (``dev*.jsonl``), in name order."""
    return sorted(p for p in data.glob("dev*.jsonl") if p.is_file())


def main(argv: list[str] | None = None) -> int:
    """Entry point."""
    here = Path(__file__).resolve().parent
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--data", type=Path, default=here.parent.parent / "tests" / "data" / "tagging")
    parser.add_argument("--out", type=Path, default=here / "tier_model.json")
    parser.add_argument("--cv", action="store_true", help="leave-one-file-out accuracy; writes nothing")
    parser.add_argument(
        "--curve",
        action="store_true",
        help="accuracy on 10 files by number of other files trained on (5, 10, 20); writes nothing",
    )
    parser.add_argument("--l2", type=float, default=L2, help=f"L2 penalty (default {L2})")
    parser.add_argument("--min-df", type=int, default=MIN_DF, help=f"least messages per feature ({MIN_DF})")
    args = parser.parse_args(argv)
    paths = dev_files(args.data)
    if not paths:
        print(f"error: no dev*.jsonl in {args.data}", file=sys.stderr)
        return 2
    if args.curve:
        sizes = [k for k in (5, 10, 20) if k < len(paths)] or [len(paths) - 1]
        try:
            curve = learning_curve(paths, sizes)
        except ValueError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 2
        for k, n, right in curve:
            print(f"trained on {k:2d} writers: {right / n:.3f} of {n} messages by other writers")
        return 0
    if args.cv:
        results = cross_validate(paths, args.l2, args.min_df)
        for name, n, right, votes in results:
            print(f"{name:18s} {n:4d} messages  model {right / n:.3f}  votes {votes / n:.3f}")
        n = sum(r[1] for r in results)
        model_acc, votes_acc = sum(r[2] for r in results) / n, sum(r[3] for r in results) / n
        print(f"{'all':18s} {n:4d} messages  model {model_acc:.3f}  votes {votes_acc:.3f}")
        return 0
    rows = training_rows(paths)
    model = fit(rows, args.l2, args.min_df)
    meta: dict[str, Any] = {
        "trained_on": {p.name: hashlib.sha256(p.read_bytes()).hexdigest()[:16] for p in paths},
        "messages": len(rows),
        "epochs": EPOCHS,
        "step": STEP,
        "l2": args.l2,
        "min_df": args.min_df,
    }
    args.out.write_text(dump(model.to_json(**meta)), encoding="utf-8")
    print(f"{args.out}: {len(model.weights)} features from {len(rows)} messages in {len(paths)} files")
    return 0


if __name__ == "__main__":
    sys.exit(main())
