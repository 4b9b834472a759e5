"""anyshot's recommended settings: tuned on validation classes only (see BENCHMARKS.md).

The method dataclasses keep the paper's hyper-parameters as their defaults (T = 1, Adam 5e-5,
25 epochs, lambda = 1). With scope ``head`` those barely move a cosine classifier whose logits
lie in [-1, 1]; these settings are what the tuning on Omniglot val and mini-ImageNet val chose.
"""

from __future__ import annotations

from anyshot.methods.finetune import TransductiveFineTuning

__all__ = ["HEAD_SETTINGS", "recommended_method"]

#: Temperature, learning rate and epochs for transductive fine-tuning of the head.
HEAD_SETTINGS: dict[str, float | int] = {"temperature": 0.1, "lr": 1e-2, "epochs": 25}


def recommended_method(*, seed: int = 0, device: str | None = None) -> TransductiveFineTuning:
    """Transductive fine-tuning of the cosine head with the validation-tuned settings."""
    return TransductiveFineTuning(
        scope="head",
        temperature=float(HEAD_SETTINGS["temperature"]),
        lr=float(HEAD_SETTINGS["lr"]),
        epochs=int(HEAD_SETTINGS["epochs"]),
        seed=seed,
        device=device,
    )
