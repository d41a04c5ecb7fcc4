"""A CPU backend for verl 0.9.1's own trainer loop (``fit()``), chosen by ``trainer.device=cpu``.

verl has no CPU path (verl issue #3266). Through its extension points only, this package adds:

- ``platform``: a ``cpu`` platform in verl's ``PlatformRegistry`` (gloo, host memory);
- ``engine``: verl's FSDP2 engine registered for ``cpu`` (actor and reference) and the gloo group;
- ``rollout``: a transformers rollout server behind verl's server interface (``rollout.name=hf``)
  that receives the actor's weights at every weight sync and never samples image placeholders.

The entry point (``medsage-rgrpo``) sets ``VERL_PLATFORM=cpu`` and lists this package in
``VERL_USE_EXTERNAL_MODULES`` for every Ray process, so ``import verl`` imports it first. The platform
is registered before the engine module is imported: verl's FSDP engine asks for the device name at
import time.
"""

from . import platform  # noqa: F401  (first: registers the cpu platform)
from . import engine  # noqa: F401  (registers the FSDP2 engine for cpu)
from .rollout import register

register()
