"""R-GRPO on verl 0.9.1 (paper section 3.3), plugged in through verl's public extension points.

- ``agent_loop``: the self-check retry agent loop (registered as ``medsage_self_check``).
- ``advantage``: the masked alpha-advantage (eqs. 10-12) on verl's GRPO normalisation.
- ``trainer``: the R-GRPO trainer (``trainer.v1.trainer_mode=rgrpo``) with the vision tower frozen.
- ``main``: the hydra entry point, ``python -m medsage.plugins.verl.main``.
- ``hf_backend``: batched generation with verl's ``generate()`` contract over a Hugging Face model.
- ``cpu``: the CPU backend for verl's own trainer loop (``trainer.device=cpu``).
- ``sessions``: per-step session records (spans, rewards, advantages).
- ``worker``: the hybrid worker the trainer hands verl (frozen vision tower; gloo on CPU).

Modules are imported on demand: Ray workers import the modules whose classes they are handed (and, on
CPU, ``cpu`` through ``VERL_USE_EXTERNAL_MODULES``), so this package must stay cheap to import.
"""
