"""The linear tier model: the fast path equals its reference, the shipped weights are what training on the
development files gives, and the tagger reports when the model overrode the rules."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from daemon.config import Settings
from daemon.service import build_tagger
from daemon.tagging import RULES_VERSION, RulesTagger, make_tagger
from daemon.tagging.markers import DEFAULT_INDEX
from daemon.tagging.rules import classify_tier
from daemon.tagging.text import extract
from daemon.tagging.tier_model import TierModel, default_model, tier_features
from tests.helpers import labelled_contents, make_messages

DATA = Path(__file__).resolve().parent / "data" / "tagging"


def test_fast_decide_equals_the_feature_dict_reference() -> None:
    model = default_model()
    for content in [*labelled_contents(), "", "```\nx = 1\n```", "ok"]:
        features = extract(content)
        hits = DEFAULT_INDEX.match(features)
        decision = classify_tier(features, hits)
        fast = model.decide(features, hits, decision.votes, decision.tier)
        slow = model.decide_features(tier_features(features, hits, decision.votes, decision.tier))
        assert fast.tier == slow.tier, content[:80]
        assert fast.confidence == pytest.approx(slow.confidence, abs=1e-9)
        assert fast.evidence == slow.evidence


def test_shipped_model_is_what_training_on_the_dev_files_gives() -> None:
    """The weights in tier_model.json come from the development files only, reproducibly."""
    pytest.importorskip("numpy")
    from daemon.tagging import train_tier_model as train

    shipped = json.loads((Path(train.__file__).parent / "tier_model.json").read_text(encoding="utf-8"))
    paths = train.dev_files(DATA)
    assert [p.name for p in paths] == sorted(shipped["trained_on"])
    assert all(not p.name.startswith("heldout") for p in paths)
    model = train.fit(train.training_rows(paths))
    assert shipped["bias"] == pytest.approx(list(model.bias), abs=1e-9)
    assert shipped["weights"].keys() == model.weights.keys()
    for feature, weights in model.weights.items():
        assert shipped["weights"][feature] == pytest.approx(list(weights), abs=1e-9), feature


def test_ties_go_to_the_first_tier_and_evidence_names_the_push() -> None:
    model = TierModel("t-1", (0.0, 0.0, 0.0), {"q": (1.0, 1.0, 0.0), "w:ship": (2.0, 0.0, 0.0)})
    tie = model.decide_features({"q": 1.0})
    assert tie.tier == "A"
    ship = model.decide_features({"q": 1.0, "w:ship": 1.0})
    assert ship.tier == "A" and ship.evidence["top"][0][0] == "words"
    with pytest.raises(ValueError):
        TierModel("bad", (0.0, 0.0), {})  # type: ignore[arg-type]


def test_the_tagger_says_when_the_model_overrode_the_rules() -> None:
    tagger = RulesTagger()
    votes_only = RulesTagger(tier_model=None)
    assert tagger.version == RULES_VERSION and votes_only.version == RULES_VERSION + "-votes"
    overridden = 0
    for i, content in enumerate(labelled_contents()[:200]):
        tags = tagger.tag_text(content, f"c{i}", f"m{i}", "claude")
        plain = votes_only.tag_text(content, f"c{i}", f"m{i}", "claude")
        model = tags.evidence["tier_model"]
        assert set(model) >= {"model", "scores_vs_E", "top"}
        assert "tier_model" not in plain.evidence
        if tags.tier != plain.tier:
            overridden += 1
            assert tags.tier_rule == f"tier_model.{tags.tier}"
            assert model["rules_said"] == [plain.tier, plain.tier_rule]
        else:
            assert tags.tier_rule == plain.tier_rule and "rules_said" not in model
    assert overridden > 0  # the labelled texts include messages the votes get wrong


def test_settings_switch_the_model_off_everywhere(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path, tier_model=False, tag_in_process=True)
    assert build_tagger(settings).version == RULES_VERSION + "-votes"
    assert make_tagger("rules", 5, tier_model=False).version == RULES_VERSION + "-votes"
    child = build_tagger(Settings(data_dir=tmp_path, tier_model=False))
    try:
        assert child.version == RULES_VERSION + "-votes"
        tags = child.tag_batch(make_messages("claude", 1))
        assert tags[0] is not None and tags[0].tagger_version == RULES_VERSION + "-votes"
    finally:
        getattr(child, "close", lambda: None)()


def test_cross_validation_leaves_each_file_out(tmp_path: Path) -> None:
    """--cv trains on the other files and scores each left-out file's messages once."""
    pytest.importorskip("numpy")
    from daemon.tagging import train_tier_model as train

    for name in ("dev.jsonl", "dev_b.jsonl", "dev_c.jsonl"):
        (tmp_path / name).write_bytes((DATA / name).read_bytes())
    (tmp_path / "heldout.jsonl").write_text("not read\n", encoding="utf-8")
    results = train.cross_validate(train.dev_files(tmp_path))
    assert [r[0] for r in results] == ["dev.jsonl", "dev_b.jsonl", "dev_c.jsonl"]
    for name, n, right, votes in results:
        assert n == len((DATA / name).read_text(encoding="utf-8").splitlines())
        assert 0.5 * n < right <= n and 0 <= votes <= n
    assert train.main(["--data", str(tmp_path), "--cv", "--out", str(tmp_path / "m.json")]) == 0
    assert not (tmp_path / "m.json").exists()


def test_learning_curve_trains_on_k_other_files_and_is_repeatable(tmp_path: Path) -> None:
    """--curve scores files never in their own training draw; the same seed gives the same figures."""
    pytest.importorskip("numpy")
    from daemon.tagging import train_tier_model as train

    for name in ("dev.jsonl", "dev_b.jsonl", "dev_c.jsonl"):
        (tmp_path / name).write_bytes((DATA / name).read_bytes())
    paths = train.dev_files(tmp_path)
    curve = train.learning_curve(paths, [1, 2], scored_files=2)
    assert [k for k, _, _ in curve] == [1, 2]
    for _, n, right in curve:
        assert 0.3 * n < right <= n
    assert train.learning_curve(paths, [1, 2], scored_files=2) == curve
    with pytest.raises(ValueError, match="cannot train on 3 of 3"):
        train.learning_curve(paths, [3])
    assert train.main(["--data", str(tmp_path), "--curve", "--out", str(tmp_path / "m.json")]) == 0
    assert not (tmp_path / "m.json").exists()
