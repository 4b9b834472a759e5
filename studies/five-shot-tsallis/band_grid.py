"""``benchmarks/realistic_grid.py`` with one more preset, ``band`` = the default with
``tsallis_band = (0.4, 0.8)`` (the default without it: ``recommended:tsallis_band=...`` cannot be
written, the methods list is comma-separated). Written when the band was not yet the default;
today ``recommended`` has it, so compare with ``recommended`` and a preset without it.

    OMP_NUM_THREADS=1 PYTHONPATH=src:benchmarks python studies/five-shot-tsallis/band_grid.py \\
        --split val --cells 'mini-*5s*,mini-*20s*' --methods support-init,recommended,band \\
        --episodes-dir EPISODES --output band-val-mini.json
"""
import dataclasses
import sys

sys.path.insert(0, "benchmarks")
from anyshot.methods import presets  # noqa: E402

presets.PRESETS["band"] = dataclasses.replace(presets.RECOMMENDED, tsallis_band=(0.4, 0.8))
presets.PRESETS["no-band"] = dataclasses.replace(presets.RECOMMENDED, tsallis_band=(0.0, 0.0))
import realistic_grid  # noqa: E402

realistic_grid.main()
