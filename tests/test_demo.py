"""``anyshot demo`` (``make demo``): a real evaluation on the shipped Omniglot sample."""

from __future__ import annotations

from anyshot.demo import run_demo


def test_demo_compares_both_methods_on_the_same_episodes() -> None:
    report = run_demo(episodes=3, show_progress=False)
    assert set(report.results) == {"support-init", "transductive (head)*"}
    runs = [r["episodes"] for r in report.results.values()]
    assert [len(r) for r in runs] == [3, 3]
    assert [e["index"] for e in runs[0]] == [e["index"] for e in runs[1]]
    for result in report.results.values():  # far above 5-way chance (20%) on real characters
        assert result["summary"]["accuracy_mean"] > 0.4
    assert "support-init" in report.text and "transductive (head)*" in report.text
