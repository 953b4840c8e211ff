"""Deterministic synthetic Pendo Data Sync export trees, with the ground truth a loader must reach."""

from pendo_assets.generator.cli import add_generate_arguments, run_generate
from pendo_assets.generator.generation import (
    GeneratedApp, GeneratedExports, GeneratedSubscription, MissingListedFile, generate)
from pendo_assets.generator.metadata_exports import MetadataTruth
from pendo_assets.generator.scenarios import SCENARIOS
from pendo_assets.generator.spec import Scenario
from pendo_assets.generator.truth import Truth

__all__ = [
    "SCENARIOS",
    "GeneratedApp",
    "GeneratedExports",
    "GeneratedSubscription",
    "MetadataTruth",
    "MissingListedFile",
    "Scenario",
    "Truth",
    "add_generate_arguments",
    "generate",
    "run_generate",
]
