"""LabelChecker: all-or-nothing validation with index and field, and status decisions."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from enforce_sdk import Enforcement, LabelValidationError, SourceType
from enforce_sdk.model.records import LabelStatus
from enforce_sdk.store import LabelChecker, LabelRejectedError, StoreConfig


def raw(entity: str = "pin:1", *, stype: str = "automated", enforcement: str = "block",
        **extra: Any) -> dict[str, Any]:
    return {
        "entity": entity,
        "source": {"system": "spam_model", "type": stype, "name": "v1"},
        "enforcement": enforcement,
        "created_at": "2026-01-01T00:00:00Z",
        **{"reason": "spam", **extra},
    }


CHECKER = LabelChecker(trusted_entities=["user:42", "domain:WWW.Partner.com"], max_metadata_bytes=64)


def test_trusted_entities_are_canonicalised() -> None:
    assert CHECKER.trusted_entities == {"user:42", "domain:partner.com"}
    with pytest.raises(LabelValidationError, match="trusted entity"):
        LabelChecker(trusted_entities=["no-kind"])


def test_from_config_takes_limits_and_trusted_entities() -> None:
    config = StoreConfig.from_dict({"limits": {"max_metadata_bytes": 10},
                                    "checker": {"trusted_entities": ["user:7"]}})
    checker = LabelChecker.from_config(config)
    assert checker.trusted_entities == {"user:7"}
    assert checker.max_metadata_bytes == 10


def test_untrusted_automated_block_is_active() -> None:
    (op,) = CHECKER.check([raw("pin:1")])
    assert (op.status, op.decides_pending) == (LabelStatus.ACTIVE, False)


def test_automated_negative_on_trusted_entity_is_pending() -> None:
    (op,) = CHECKER.check([raw("domain:shop.partner.com", enforcement="limit")])
    assert op.label.entity == "domain:partner.com"
    assert (op.status, op.decides_pending) == (LabelStatus.PENDING, False)


def test_automated_allow_on_trusted_entity_is_active() -> None:
    (op,) = CHECKER.check([raw("user:42", enforcement="allow")])
    assert op.status is LabelStatus.ACTIVE


def test_human_label_decides_pending() -> None:
    (op,) = CHECKER.check([raw("user:42", stype="human")])
    assert (op.status, op.decides_pending) == (LabelStatus.ACTIVE, True)


@given(
    enforcement=st.sampled_from(list(Enforcement)),
    stype=st.sampled_from(list(SourceType)),
    trusted=st.booleans(),
)
def test_status_rule(enforcement: Enforcement, stype: SourceType, trusted: bool) -> None:
    entity = "user:42" if trusted else "user:43"
    (op,) = CHECKER.check([raw(entity, stype=stype.value, enforcement=enforcement.wire)])
    held = stype is SourceType.AUTOMATED and trusted and enforcement >= Enforcement.LIMIT
    assert op.status is (LabelStatus.PENDING if held else LabelStatus.ACTIVE)
    assert op.decides_pending is (stype is SourceType.HUMAN)


@pytest.mark.parametrize(
    ("bad", "field"),
    [
        (raw(enforcement="nuke"), "enforcement"),
        (raw(confidence=1.5), "confidence"),
        (raw(colour="red"), "label"),
        (raw(entity="nokind"), "entity"),
        ({**raw(), "source": "spam_model"}, "source"),
        ("not an object", "label"),
    ],
)
def test_bad_label_names_index_and_field(bad: object, field: str) -> None:
    with pytest.raises(LabelRejectedError) as info:
        CHECKER.check([raw("pin:1"), raw("pin:2"), bad])
    assert info.value.index == 2
    assert info.value.field == field
    assert not info.value.too_large
    assert str(info.value).startswith("label 2: ")


def test_metadata_over_store_limit_is_too_large() -> None:
    big = raw(metadata={"note": "x" * 100})
    with pytest.raises(LabelRejectedError) as info:
        CHECKER.check([raw(), big])
    assert (info.value.index, info.value.field, info.value.too_large) == (1, "metadata", True)
    assert "limit of 64 bytes" in str(info.value)
    (op,) = CHECKER.check([raw(metadata={"note": "x" * 40})])
    assert op.label.metadata["note"] == "x" * 40


# -- the SDK config's policy (store/live_policy): registry and confidence routing -------------

def _live(**document: Any) -> Any:
    from enforce_sdk.config.document import EnforcementConfig
    from enforce_sdk.store.live_policy import LivePolicy, PolicyView

    cfg = EnforcementConfig.from_dict({"version": 1, "surfaces": {"s": {}}, **document})
    live = LivePolicy()
    live.set(PolicyView(cfg.version, "test", cfg.surfaces, cfg.resolvers, cfg.to_dict(),
                        reasons=cfg.reasons, confidence=cfg.confidence))
    return live


_REASONS = {"spam": {"tier": "medium", "description": "d", "owner": "o"}}


def test_without_a_registry_any_reason_passes() -> None:
    checker = LabelChecker(policy=_live())
    (op,) = checker.check([raw(reason="whatever")])
    assert op.status is LabelStatus.ACTIVE


def test_an_unregistered_reason_is_refused_with_the_nearest_names() -> None:
    checker = LabelChecker(policy=_live(reasons=_REASONS))
    with pytest.raises(LabelRejectedError) as info:
        checker.check([raw(), raw(reason="spamm")])
    exc = info.value
    assert (exc.index, exc.field, exc.code) == (1, "reason", "unknown_reason")
    assert exc.extra == {"reason": "spamm", "suggestions": ["spam"]}
    assert checker.counts["refused_unregistered"] == 1


def test_confidence_routing_holds_and_drops_automated_labels_only() -> None:
    checker = LabelChecker(policy=_live(
        reasons=_REASONS, sources={"spam_model": {"hold_below": 0.7, "drop_below": 0.2}}))
    ops = checker.check([raw("pin:1", confidence=0.55), raw("pin:2", confidence=0.7),
                         raw("pin:3"), raw("pin:4", stype="human", confidence=0.1)])
    assert [op.status for op in ops] == [LabelStatus.PENDING, LabelStatus.ACTIVE,
                                         LabelStatus.ACTIVE, LabelStatus.ACTIVE]
    assert checker.counts["held_low_confidence"] == 1
    with pytest.raises(LabelRejectedError) as info:
        checker.check([raw("pin:5", confidence=0.19)])
    assert info.value.code == "low_confidence" and info.value.extra["drop_below"] == 0.2
    assert checker.counts["dropped_low_confidence"] == 1


# docs/resolver.md, "Confidence": the Label Checker's routing with
# [sources.spam_model] hold_below = 0.7, drop_below = 0.2
@pytest.mark.parametrize(("stype", "system", "confidence", "outcome"), [
    ("automated", "spam_model", 0.9, "active"),
    ("automated", "spam_model", 0.7, "active"),       # at hold_below: not below it
    ("automated", "spam_model", 0.55, "pending"),     # held for review
    ("automated", "spam_model", 0.2, "pending"),      # at drop_below: held, not dropped
    ("automated", "spam_model", 0.1, "refused"),      # 422 low_confidence
    ("automated", "spam_model", None, "active"),      # no confidence: not routed
    ("automated", "other_model", 0.1, "active"),      # a system without thresholds
    ("human", "spam_model", 0.1, "active"),           # human labels are never routed
])
def test_doc_confidence_routing_table(stype: str, system: str, confidence: float | None,
                                      outcome: str) -> None:
    checker = LabelChecker(policy=_live(
        sources={"spam_model": {"hold_below": 0.7, "drop_below": 0.2}}))
    label = raw(stype=stype, **({} if confidence is None else {"confidence": confidence}))
    label["source"]["system"] = system
    if outcome == "refused":
        with pytest.raises(LabelRejectedError, match="refused as noise"):
            checker.check([label])
        return
    (op,) = checker.check([label])
    assert op.status.value == outcome
