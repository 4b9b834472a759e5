"""easyfsl few-shot methods on pre-computed episode features: accuracy and time per episode.

Runs in its own virtual environment with only ``torch`` and ``easyfsl`` installed (no anyshot):

    python -m venv benchmarks/.venv-easyfsl
    benchmarks/.venv-easyfsl/bin/pip install --find-links /opt/wheels torch==2.13.0
    benchmarks/.venv-easyfsl/bin/pip install --no-deps easyfsl==1.5.0

``easyfsl/methods/__init__.py`` also imports FEAT and RelationNetworks, which need torchvision;
when torchvision is missing the method modules used here (none of which needs it) are imported
one by one instead of through that ``__init__``.

**Input** (``--episodes-file``): a ``torch.save`` of a dict with

* ``support``: ``[E, S, D]`` float features (or a list of ``E`` tensors ``[S_e, D]``);
* ``support_labels``: ``[E, S]`` class indices ``0..K-1`` (or a list of ``[S_e]``);
* ``query``: ``[E, Q, D]`` (or a list of ``[Q_e, D]``);
* ``query_labels``: ``[E, Q]`` (or a list of ``[Q_e]``);
* ``meta`` (optional): anything JSON-friendly, copied to the output.

**Per episode**, exactly what ``easyfsl.utils.evaluate_on_one_task`` does inside
``easyfsl.utils.evaluate`` (``model.eval()``, ``torch.no_grad()``):
``model.process_support_set(support, support_labels)``, ``scores = model(query)``, prediction
``scores.argmax(1)``. The model's backbone is ``nn.Identity()`` (the inputs are features), every
hyper-parameter is easyfsl's default unless ``--option`` sets it. One untimed warm-up episode
(episode 0) runs first; then every episode is timed (``time.perf_counter``).

Of the benchmark harness it uses only :mod:`harness.cli` and :mod:`harness.output` (standard
library and torch).

**Output** (``--output``, JSON): per method the effective hyper-parameters, per-episode
accuracies and seconds, their summary (mean, std, 95% CI half-width 1.96 std / sqrt(n), median
seconds, episodes per second) and the process's peak resident memory (``ru_maxrss``, the whole
process: all methods of one run together).

    benchmarks/.venv-easyfsl/bin/python benchmarks/easyfsl_methods.py \\
        --episodes-file /tmp/episodes-1shot.pt --methods TIM BDCSPN LaplacianShot \\
        --option TIM.fine_tuning_steps=100 --output /tmp/easyfsl-1shot.json
"""

from __future__ import annotations

import importlib
import inspect
import json
import math
import sys
import time
import types
from pathlib import Path
from typing import Any

import torch
from torch import nn

from harness.cli import OPTIONAL, REQUIRED, add_shared_arguments, script_parser
from harness.output import environment, peak_rss_mb, write_json

#: easyfsl class name -> its module under ``easyfsl.methods`` (the feature-level methods).
METHOD_MODULES = {
    "PrototypicalNetworks": "prototypical_networks",
    "SimpleShot": "simple_shot",
    "BDCSPN": "bd_cspn",
    "LaplacianShot": "laplacian_shot",
    "TIM": "tim",
    "TransductiveFinetuning": "transductive_finetuning",
    "Finetune": "finetune",
    "PTMAP": "pt_map",
}


def method_class(name: str) -> type:
    """The easyfsl method class ``name``, importable without torchvision."""
    if name not in METHOD_MODULES:
        raise SystemExit(f"unknown method {name!r}; choose from {sorted(METHOD_MODULES)}")
    try:
        import easyfsl.methods
    except ImportError:  # its __init__ imports FEAT / RelationNetworks -> torchvision
        import easyfsl

        folder = Path(easyfsl.__file__).parent / "methods"
        package = types.ModuleType("easyfsl.methods")
        package.__path__ = [str(folder)]
        package.__package__ = "easyfsl.methods"
        sys.modules["easyfsl.methods"] = package
    module = importlib.import_module(f"easyfsl.methods.{METHOD_MODULES[name]}")
    cls: type = getattr(module, name)
    return cls


def parse_options(items: list[str]) -> dict[str, dict[str, Any]]:
    """``["TIM.fine_tuning_steps=100", ...]`` -> ``{"TIM": {"fine_tuning_steps": 100}}``."""
    options: dict[str, dict[str, Any]] = {}
    for item in items:
        key, sep, text = item.partition("=")
        method, dot, name = key.partition(".")
        if not sep or not dot:
            raise SystemExit(f"--option must look like METHOD.name=value, got {item!r}")
        try:
            value = json.loads(text)
        except json.JSONDecodeError:
            value = text
        options.setdefault(method, {})[name] = value
    return options


def hyper_parameters(cls: type, given: dict[str, Any]) -> dict[str, Any]:
    """The keyword defaults of ``cls`` and its bases' constructors, overridden by ``given``."""
    settings: dict[str, Any] = {}
    for klass in reversed(cls.__mro__):
        init = klass.__dict__.get("__init__")
        if init is None or klass is object or klass.__module__.startswith("torch"):
            continue
        for parameter in inspect.signature(init).parameters.values():
            if parameter.default is not inspect.Parameter.empty and parameter.name != "backbone":
                default = parameter.default
                settings[parameter.name] = default if _jsonable(default) else repr(default)
    settings.update(given)
    return settings


def _jsonable(value: Any) -> bool:
    try:
        json.dumps(value)
    except TypeError:
        return False
    return True


def episode(data: dict[str, Any], index: int) -> tuple[torch.Tensor, ...]:
    """``(support, support_labels, query, query_labels)`` of episode ``index``."""
    return tuple(
        data[key][index].float() if "labels" not in key else data[key][index].long()
        for key in ("support", "support_labels", "query", "query_labels")
    )


def run_method(cls: type, options: dict[str, Any], data: dict[str, Any]) -> dict[str, Any]:
    """Accuracy and seconds of every episode of ``data`` for one method."""
    model = cls(nn.Identity(), **options)
    model.eval()
    count = len(data["support"])
    accuracies: list[float] = []
    seconds: list[float] = []
    with torch.no_grad():
        for index in [0, *range(count)]:  # episode 0 twice: the first run is a warm-up
            support, support_labels, query, query_labels = episode(data, index)
            start = time.perf_counter()
            model.process_support_set(support, support_labels)
            scores = model(query).detach()
            elapsed = time.perf_counter() - start
            accuracy = (scores.argmax(1) == query_labels).float().mean().item()
            accuracies.append(accuracy)
            seconds.append(elapsed)
    accuracies, seconds = accuracies[1:], seconds[1:]
    n = len(accuracies)
    mean = sum(accuracies) / n
    std = math.sqrt(sum((a - mean) ** 2 for a in accuracies) / (n - 1)) if n > 1 else 0.0
    ordered = sorted(seconds)
    median = ordered[n // 2] if n % 2 else (ordered[n // 2 - 1] + ordered[n // 2]) / 2
    return {
        "episodes": n,
        "accuracy_mean": mean,
        "accuracy_std": std,
        "accuracy_ci95": 1.96 * std / math.sqrt(n),
        "seconds_total": sum(seconds),
        "seconds_per_episode_median": median,
        "episodes_per_s": n / sum(seconds) if sum(seconds) > 0 else float("inf"),
        "accuracies": accuracies,
        "seconds": seconds,
    }


def main() -> None:
    parser = script_parser(__doc__)
    add_shared_arguments(
        parser,
        episodes=OPTIONAL,
        threads=OPTIONAL,
        seed=0,
        output=REQUIRED,
        helps={
            "episodes": "only the first N episodes",
            "seed": "torch.manual_seed before each method",
        },
    )
    parser.add_argument("--episodes-file", type=Path, required=True)
    parser.add_argument(
        "--methods",
        nargs="+",
        default=["PrototypicalNetworks", "TransductiveFinetuning", "TIM"],
        choices=sorted(METHOD_MODULES),
    )
    parser.add_argument(
        "--option",
        action="append",
        default=[],
        metavar="METHOD.name=value",
        help="a constructor keyword of one method (value parsed as JSON); repeatable",
    )
    args = parser.parse_args()
    if args.threads is not None:
        torch.set_num_threads(args.threads)

    data: dict[str, Any] = torch.load(args.episodes_file, weights_only=True)
    if args.episodes is not None:
        data = {
            key: (value[: args.episodes] if key != "meta" else value) for key, value in data.items()
        }
    options = parse_options(args.option)
    unknown = sorted(set(options) - set(args.methods))
    if unknown:
        raise SystemExit(f"--option given for methods not run: {unknown}")
    import easyfsl

    results: dict[str, Any] = {}
    for name in args.methods:
        cls = method_class(name)
        torch.manual_seed(args.seed)
        given = options.get(name, {})
        result = run_method(cls, given, data)
        result["hyper_parameters"] = hyper_parameters(cls, given)
        results[name] = result
        print(
            f"{name:24s} {100 * result['accuracy_mean']:6.2f} ± "
            f"{100 * result['accuracy_ci95']:.2f} %   "
            f"{result['episodes_per_s']:9.1f} episodes/s",
            file=sys.stderr,
        )
    write_json(
        args.output,
        {
            "episodes_file": str(args.episodes_file),
            "meta": data.get("meta"),
            "easyfsl": getattr(easyfsl, "__version__", None),
            **environment("torch", "torch_threads", "OMP_NUM_THREADS", "machine"),
            "peak_rss_mb": peak_rss_mb(),
            "results": results,
        },
        allow_nan=True,
    )


if __name__ == "__main__":
    main()
