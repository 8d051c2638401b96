"""Typed experiment configuration.

Each experiment's config is a tree of frozen dataclasses, and that tree is the single source of truth: the
CLI flags are generated from it (tyro), values from files and `override` are checked against its types, it
is printed and saved as JSON, and its hash names the run folder.

- Sections (`DataConfig`, `TrainConfig`, ...) check their own values (`check`): bad input is refused before
  any work starts, with a message that names the flag and the fix.
- The hash covers only fields that differ from their defaults, plus the experiment's name. Adding a field
  with a default therefore leaves every existing run's hash as it is; changing a default of a hashed field
  would silently change what old hashes mean, so never do that: add a field instead.
- Fields marked `_local` (where data and runs live, the device, the `compute` section) say how or where to
  compute, not what; fields marked `_extent` say how much of an experiment to run. Neither is hashed.

This package imports no torch: `lth --help` and `lth presets` stay fast. Its modules: `fields` (markers and
shared checks), `sections` (the shared sections, RunConfig, ImpConfig), `beyond` and `rl` (the configs of
prune_at_init, supermask and lth rl), `parse` (dicts, files, overrides, type checks), `hashing` (the run hash).
"""

from __future__ import annotations

from lth.config.beyond import (  # noqa: F401
    PAI_ABLATIONS,
    SUPERMASK_METHODS,
    PaiSection,
    PruneAtInitConfig,
    SupermaskConfig,
    SupermaskSection,
)
from lth.config.fields import STEP_HELP, parse_steps  # noqa: F401
from lth.config.hashing import (  # noqa: F401
    config_hash,
    experiment_name,
    format_config,
    hashed_dict,
    legacy_hash,
)
from lth.config.parse import (  # noqa: F401
    check_types,
    from_dict,
    load_file,
    override,
    to_dict,
)
from lth.config.rl import EnvConfig, PpoConfig, RlConfig  # noqa: F401
from lth.config.sections import (  # noqa: F401
    LOGGERS,
    ComputeConfig,
    DataConfig,
    ExecutorConfig,
    ExperimentConfig,
    ImpConfig,
    LotteryConfig,
    ModelConfig,
    PruneConfig,
    RunConfig,
    TrainConfig,
    check_sections,
)
