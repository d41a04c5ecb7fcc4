"""Recipes and command lines, the same for every tool: typed recipe sections read by one loader
(:mod:`.recipe`) and one command shape, ``medsage-<tool> [verb] RECIPE.yaml a.b=value ...``
(:mod:`.command`)."""

from .command import USAGE_ERROR, parse, recipe_parser, run
from .recipe import ConfigError, apply_overrides, bounded, build, load, missing_model, missing_paths, package_file

__all__ = ["USAGE_ERROR", "ConfigError", "apply_overrides", "bounded", "build", "load", "missing_model", "missing_paths",
           "package_file", "parse", "recipe_parser", "run"]
