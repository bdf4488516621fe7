"""Our match decisions at PDQ's threshold against the reference's, on the robustness table's
(photograph, transform) pairs: resize 50%, JPEG q50, brighten +20%, mirror through the
dihedral variants, 5% crop (benchmarks/bench_image_robustness.py builds them)."""

from __future__ import annotations

from benchmarks.bench_image_robustness import TRANSFORMS, robustness

from tests.native.test_images import PHOTOS


def test_match_decisions_agree_with_the_reference_on_99_percent_of_pairs() -> None:
    table = robustness()
    agreeing = sum(table[name]["decisions_agree"] * len(PHOTOS) for name in TRANSFORMS)
    assert agreeing / (len(TRANSFORMS) * len(PHOTOS)) >= 0.99
    # per transform ours matches the reference's share of copies, less one photograph at most;
    # no pair of distinct photographs matches
    for name in TRANSFORMS:
        assert table[name]["ours_matched"] >= table[name]["reference_matched"] - 0.06, name
    assert table["distinct pairs"]["ours_false_matches"] == 0
