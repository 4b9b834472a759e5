"""Every default ``--help`` states is the one the code uses: the rendered help of each command
is compared with the dataclasses the defaults come from (``EvaluationConfig``, the method
presets ``RECOMMENDED`` / ``PAPER``, ``PretrainConfig``), and the parsers' defaults with them."""

from __future__ import annotations

import argparse
import dataclasses
import inspect
import re
from typing import Any

import pytest

from anyshot.backbones.preprocessing import DATASET_INPUTS, INPUT_SPECS
from anyshot.classifier import FewShotClassifier
from anyshot.cli import build_parser
from anyshot.cli.options import TRAINING_FIELDS, method_from_args
from anyshot.demo import run_demo
from anyshot.evaluation.run import DEFAULT_SHOTS, DEFAULT_WAYS, EvaluationConfig
from anyshot.methods.finetune import QUERY_FIELDS, FineTuning
from anyshot.methods.presets import PAPER, RECOMMENDED, SUPPORT_INIT
from anyshot.methods.scope_rule import FEW_SHOT_BUDGET, FEW_SHOTS
from anyshot.pretrain import PAPER_CYCLES, PretrainConfig

#: Method settings whose default depends on the scope (``None`` in the parser).
METHOD_COMMANDS = ("evaluate", "classify", "fit")


def command(name: str) -> argparse.ArgumentParser:
    """The sub-parser of ``anyshot NAME``."""
    parser = build_parser()
    (sub,) = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    result: argparse.ArgumentParser = sub.choices[name]
    return result


def option_help(parser: argparse.ArgumentParser, flag: str) -> str:
    """The rendered ``--help`` block of ``flag`` (its line and the indented lines after it),
    whitespace collapsed and argparse's line-break hyphens joined."""
    lines = parser.format_help().splitlines()
    pattern = re.compile(rf"^  {re.escape(flag)}(?=[ ,]|$)")
    (start,) = [i for i, line in enumerate(lines) if pattern.match(line)]
    block = [lines[start]]
    for line in lines[start + 1 :]:
        if not line.startswith("    "):
            break
        block.append(line)
    text = " ".join(part.strip() for part in block)
    return re.sub(r"(\w)- (\w)", r"\1-\2", text)


def flag_of(action: argparse.Action) -> str:
    """The option's first long flag (``--no-x`` of a negative store_false flag is kept)."""
    return next(s for s in action.option_strings if s.startswith("--"))


def words(value: Any) -> str:
    """A default as the help writes it: yes/no for flags, a pair as the two values the option
    takes (``0.4 0.8``), else ``str``."""
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, tuple):
        return " ".join(f"{part:g}" for part in value)
    return str(value)


def field_defaults(cls: type) -> dict[str, Any]:
    return {f.name: f.default for f in dataclasses.fields(cls)}


def checked_config_options(parser: argparse.ArgumentParser, cls: type) -> set[str]:
    """Assert, for each option stored in a field of ``cls`` with a non-trivial default, that the
    parser's default is the field's and the rendered help says it; return the flags checked."""
    defaults = field_defaults(cls)
    checked = set()
    for action in parser._actions:
        value = defaults.get(action.dest, dataclasses.MISSING)
        if value is None or value is dataclasses.MISSING or not action.option_strings:
            continue
        if action.required or isinstance(value, bool) or not isinstance(value, str | int | float):
            continue  # required options, flags, schedules, methods: checked by name elsewhere
        flag = flag_of(action)
        if action.default is None:  # a default that depends on other options, said in words
            assert "default: " in option_help(parser, flag), flag
            continue
        assert action.default == value, flag
        assert f"default: {value}" in option_help(parser, flag), flag
        checked.add(flag)
    return checked


def test_evaluate_help_states_the_evaluation_config_defaults() -> None:
    parser = command("evaluate")
    checked = checked_config_options(parser, EvaluationConfig)
    expected = {"--split", "--queries", "--episodes", "--seed", "--total-queries"}
    expected |= {"--dirichlet-alpha", "--cache-dtype", "--workers", "--batch-size", "--backbone"}
    assert expected <= checked
    assert f"default: {DEFAULT_WAYS}" in option_help(parser, "--ways")
    assert f"default: {DEFAULT_SHOTS}" in option_help(parser, "--shots")


def scope_words(name: str) -> str:
    """What the help must say for a method setting: the recommended head's and the paper's."""
    head, paper = getattr(RECOMMENDED, name), getattr(PAPER, name)
    if head == paper:
        return f"{words(head)} at every scope"
    return f"{words(head)} for --scope head, {words(paper)} for last/all"


@pytest.mark.parametrize("name", METHOD_COMMANDS)
def test_method_help_states_the_presets_defaults(name: str) -> None:
    parser = command(name)
    fields = {*TRAINING_FIELDS, "temperature"}
    checked = set()
    own_words = ("scope", "augment", "flip", "relu", "network_lr")
    for action in parser._actions:
        if action.dest not in fields or action.dest in own_words:
            continue
        flag = flag_of(action)
        assert action.default is None, flag  # so that the preset decides
        assert f"default: {scope_words(action.dest)}" in option_help(parser, flag), flag
        checked.add(action.dest)
    assert {"epochs", "lr", "temperature", *QUERY_FIELDS} <= checked
    assert "25 for --scope head" not in parser.format_help()  # the old, redundant wording
    assert f"{SUPPORT_INIT.temperature} for support-init" in option_help(parser, "--temperature")
    scope = option_help(parser, "--scope")
    if name == "evaluate":
        assert "(default: head)" in scope and "auto" not in scope
    else:  # the practitioner commands choose what to train
        assert "auto (default) = the head when" in scope and "--time-budget" in scope
        budget = option_help(parser, "--time-budget")
        assert f"{FEW_SHOT_BUDGET:g} s up to {FEW_SHOTS:g} labelled" in budget
    assert "on for --scope all only" in option_help(parser, "--augment")
    assert "(default: on)" in option_help(parser, "--flip") and RECOMMENDED.flip and PAPER.flip
    assert RECOMMENDED.network_lr is None and PAPER.network_lr is None
    assert "(default: --lr)" in option_help(parser, "--network-lr")  # None = the --lr value


def test_the_method_defaults_the_help_states_are_the_ones_used() -> None:
    parser = command("evaluate")
    base = ["--dataset", "folder", "--data-root", "x", "--output", "r.json"]
    head = method_from_args(parser.parse_args(base))
    paper = method_from_args(parser.parse_args([*base, "--scope", "all"]))
    for name in ("epochs", "lr", "temperature", "likelihood_weight", "min_agreement", "center"):
        assert getattr(head, name) == getattr(RECOMMENDED, name), name
        assert getattr(paper, name) == getattr(PAPER, name), name


def test_no_flip_reaches_the_method_at_every_scope() -> None:
    parser = command("classify")
    base = ["--support", "s", "--query", "q"]
    for scope in ("head", "all"):
        args = parser.parse_args([*base, "--scope", scope, "--no-flip"])
        assert method_from_args(args).flip is False  # type: ignore[union-attr]
        default = method_from_args(parser.parse_args([*base, "--scope", scope]))
        assert default.flip is True  # type: ignore[union-attr]


def test_default_method_is_described_from_its_settings() -> None:
    text = option_help(command("classify"), "--method")
    head = RECOMMENDED
    assert f"fewer than {head.min_queries_per_class:g} query images per class" in text
    assert f"fewer than {head.min_agreement:.0%}" in text
    assert f"weight {head.likelihood_weight:g}" in text and f"{head.epochs} epochs" in text
    assert "entropy is minimised" not in text and "maximised" not in text
    epilog = command("classify").format_help()
    assert f"fewer than {head.min_queries_per_class:g} query images per class" in " ".join(
        epilog.split()
    )


def test_practitioner_and_demo_defaults_are_the_library_defaults() -> None:
    batch = inspect.signature(FewShotClassifier).parameters["batch_size"].default
    assert batch == field_defaults(FineTuning)["batch_size"]
    for name in ("classify", "fit", "predict", "suggest"):
        parser = command(name)
        assert parser.get_default("batch_size") == batch, name
        assert f"default: {batch}" in option_help(parser, "--batch-size"), name
    episodes = inspect.signature(run_demo).parameters["episodes"].default
    demo = command("demo")
    assert demo.get_default("episodes") == episodes
    assert f"default: {episodes}" in option_help(demo, "--episodes")
    sizes = option_help(command("classify"), "--image-size")
    for arch, spec in INPUT_SPECS.items():
        assert re.search(rf"{spec.image_size} for [\w\-, ]*{arch}", sizes), arch


def test_pretrain_help_states_the_pretrain_config_defaults() -> None:
    parser = command("pretrain")
    checked = checked_config_options(parser, PretrainConfig)
    expected = {"--split", "--val-episodes", "--arch", "--embedding", "--batch-size", "--seed"}
    expected |= {"--label-smoothing", "--mixup-alpha", "--weight-decay", "--momentum"}
    assert expected <= checked
    schedule = ",".join(f"{e}:{lr:g}" for e, lr in PAPER_CYCLES)
    assert f"default: {schedule}" in option_help(parser, "--cycles")
    assert field_defaults(PretrainConfig)["cycles"] == PAPER_CYCLES
    assert parser.get_default("amp") is field_defaults(PretrainConfig)["amp"] is True
    assert "default: on" in option_help(parser, "--amp")
    omniglot = DATASET_INPUTS["omniglot"]
    assert f"{omniglot.image_size} for omniglot" in option_help(parser, "--image-size")
    assert f"{omniglot.channels} for omniglot" in option_help(parser, "--channels")
