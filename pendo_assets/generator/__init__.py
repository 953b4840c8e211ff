"""Deterministic synthetic Pendo Data Sync export trees, with the ground truth a loader must reach."""

from pendo_assets.generator.cli import add_generate_arguments, run_generate
from pendo_assets.generator.generation import GeneratedApp, GeneratedExports, generate
from pendo_assets.generator.scenarios import SCENARIOS, Scenario
from pendo_assets.generator.truth import Truth

__all__ = [
    "SCENARIOS",
    "GeneratedApp",
    "GeneratedExports",
    "Scenario",
    "Truth",
    "add_generate_arguments",
    "generate",
    "run_generate",
]
