"""Fine-tune the local classifier (:mod:`daemon.tagging.finetuned`) on the labelled development files.

    python -m daemon.tagging.train_classifier --out DIR [--data DIR] [--epochs 4] [--max-tokens 160]

Reads every ``dev*.jsonl`` in ``--data`` (never a held-out file) and fine-tunes the whole encoder and both
heads on each message's text, labelled tier and labelled signals: AdamW (learning rate 5e-5, weight decay
0.01), batches of 16, the learning rate warmed up over the first tenth of the steps and then decayed
linearly to zero; the loss is the tier's cross-entropy plus the signals' binary cross-entropy, each signal's
positives weighted by its negatives-to-positives ratio in the training data (at most 10), since most
messages carry no given signal (without the weights the signal head learned to say "absent"). These
settings were fixed on splits of the development files by writer before any held-out scoring. Writes
``DIR/classifier.safetensors`` (about 90 MB, so it is not committed) and ``DIR/meta.json`` (how it was
trained, on which files). On this project's 2-core machine a full run took about half an hour; a GPU is
used where torch sees one. Seeded (the heads' initial weights and the batch order); floating-point sums on
another machine or thread count may still move the weights a little, so the tag version names the weights'
digest.
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import time
from pathlib import Path
from typing import Any

from daemon.tagging.finetuned import (
    META_FILE,
    REVISION,
    TIERS,
    WEIGHTS_FILE,
    ClassifierUnavailable,
    base_model_dir,
    build_network,
    file_digest,
    load_tokenizer,
)
from schemas import SIGNAL_NAMES

EPOCHS = 4
MAX_TOKENS = 160
BATCH = 16
LEARNING_RATE = 5e-5
WEIGHT_DECAY = 0.01
WARMUP_SHARE = 0.1
#: The largest weight a signal's positive examples get in the loss.
MAX_POSITIVE_WEIGHT = 10.0


#: A labelled message: its text, its tier's index in TIERS, 0/1 per signal in SIGNAL_NAMES order.
Example = tuple[str, int, tuple[int, ...]]


def labelled(paths: list[Path]) -> list[Example]:
    """(text, tier index, 0/1 per signal in SIGNAL_NAMES order) of every labelled message in ``paths``, in
    file order."""
    out = []
    for path in paths:
        for line in path.read_text(encoding="utf-8").splitlines():
            if line.strip():
                out.append(example(json.loads(line)))
    return out


def example(item: dict[str, Any]) -> Example:
    """The training example of one labelled line (``content`` and ``label = {tier, signals}``)."""
    present = set(item["label"].get("signals", ()))
    signals = tuple(int(name in present) for name in SIGNAL_NAMES)
    return item["content"], TIERS.index(item["label"]["tier"]), signals


def positive_weights(examples: list[Example]) -> list[float]:
    """Per signal, negatives / positives in ``examples``, at most MAX_POSITIVE_WEIGHT (and a signal that
    never occurs gets that maximum)."""
    weights = []
    for i in range(len(SIGNAL_NAMES)):
        positives = sum(signals[i] for _, _, signals in examples)
        ratio = (len(examples) - positives) / positives if positives else MAX_POSITIVE_WEIGHT
        weights.append(round(min(MAX_POSITIVE_WEIGHT, ratio), 4))
    return weights


def fit(
    examples: list[Example],
    epochs: int = EPOCHS,
    max_tokens: int = MAX_TOKENS,
    seed: int = 0,
    log: Any = print,
) -> tuple[Any, list[float], str]:
    """Fine-tune a new network (both heads) on ``examples``; returns it, in eval mode, with the mean loss of
    each epoch and the device it is on. What ``train`` and the cross-validation in ``bench/`` share."""
    import torch

    torch.manual_seed(seed)
    rng = random.Random(seed)  # noqa: S311 (shuffling training data, not secrets)
    device = "cuda" if torch.cuda.is_available() else "cpu"
    tokenizer = load_tokenizer()
    network = build_network().to(device)
    pos_weight = positive_weights(examples)
    signal_weights = torch.tensor(pos_weight, device=device)
    optimiser = torch.optim.AdamW(network.parameters(), lr=LEARNING_RATE, weight_decay=WEIGHT_DECAY)
    steps = epochs * -(-len(examples) // BATCH)
    warmup = max(1.0, WARMUP_SHARE * steps)
    schedule = torch.optim.lr_scheduler.LambdaLR(
        optimiser, lambda step: min(1.0, (step + 1) / warmup) * max(0.0, (steps - step) / steps)
    )
    started = time.perf_counter()
    losses: list[float] = []
    order = list(range(len(examples)))
    for epoch in range(epochs):
        network.train()
        rng.shuffle(order)
        total = 0.0
        for start in range(0, len(order), BATCH):
            batch = [examples[i] for i in order[start : start + BATCH]]
            inputs = tokenizer(
                [text for text, _, _ in batch],
                truncation=True,
                max_length=max_tokens,
                padding=True,
                return_tensors="pt",
            ).to(device)
            tiers = torch.tensor([tier for _, tier, _ in batch], device=device)
            signals = torch.tensor([list(s) for _, _, s in batch], dtype=torch.float32, device=device)
            tier_logits, signal_logits = network(dict(inputs))
            loss = torch.nn.functional.cross_entropy(tier_logits, tiers)
            loss = loss + torch.nn.functional.binary_cross_entropy_with_logits(
                signal_logits, signals, pos_weight=signal_weights
            )
            optimiser.zero_grad()
            loss.backward()  # type: ignore[no-untyped-call]
            optimiser.step()
            schedule.step()
            total += float(loss.detach()) * len(batch)
        losses.append(round(total / len(examples), 4))
        log(f"epoch {epoch + 1}/{epochs}: mean loss {losses[-1]} ({time.perf_counter() - started:.0f} s)")
    network.eval()
    return network, losses, device


def train(
    paths: list[Path],
    out: Path,
    epochs: int = EPOCHS,
    max_tokens: int = MAX_TOKENS,
    seed: int = 0,
    log: Any = print,
) -> dict[str, Any]:
    """Fine-tune on the labelled messages of ``paths`` and write the model to ``out``; returns its meta."""
    from safetensors.torch import save_file

    if epochs < 1 or max_tokens < 8:
        raise ValueError("epochs must be at least 1 and max_tokens at least 8")
    examples = labelled(paths)
    if not examples:
        raise ValueError("no labelled messages to train on")
    started = time.perf_counter()
    network, losses, device = fit(examples, epochs, max_tokens, seed, log)
    out.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().to("cpu").contiguous() for k, v in network.state_dict().items()}
    save_file(state, str(out / WEIGHTS_FILE))
    base = base_model_dir()
    meta: dict[str, Any] = {
        "revision": REVISION,
        "base_model": "all-MiniLM-L6-v2",
        "base_weights_sha256": file_digest(base / "model.safetensors"),
        "trained_on": {p.name: file_digest(p)[:16] for p in paths},
        "messages": len(examples),
        "epochs": epochs,
        "max_tokens": max_tokens,
        "batch": BATCH,
        "learning_rate": LEARNING_RATE,
        "weight_decay": WEIGHT_DECAY,
        "seed": seed,
        "signals": list(SIGNAL_NAMES),
        "signal_positive_weight": positive_weights(examples),
        "device": device,
        "epoch_mean_loss": losses,
        "seconds": round(time.perf_counter() - started, 1),
    }
    (out / META_FILE).write_text(json.dumps(meta, indent=2) + "\n", encoding="utf-8")
    return meta


def main(argv: list[str] | None = None) -> int:
    """Entry point."""
    here = Path(__file__).resolve().parent
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--out", type=Path, required=True, help="directory the model is written to")
    parser.add_argument("--data", type=Path, default=here.parent.parent / "tests" / "data" / "tagging")
    parser.add_argument("--epochs", type=int, default=EPOCHS, help=f"passes over the data ({EPOCHS})")
    parser.add_argument(
        "--max-tokens", type=int, default=MAX_TOKENS, help=f"tokens of each message read ({MAX_TOKENS})"
    )
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    paths = sorted(p for p in args.data.glob("dev*.jsonl") if p.is_file())
    if not paths:
        print(f"error: no dev*.jsonl in {args.data}", file=sys.stderr)
        return 2
    try:
        meta = train(paths, args.out, args.epochs, args.max_tokens, args.seed)
    except (ClassifierUnavailable, ValueError, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(f"{args.out}: trained on {meta['messages']} messages in {len(paths)} files, {meta['seconds']} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
