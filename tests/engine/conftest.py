"""The real-engine suite's fixtures: enginelib's (pytest registers the fixtures a conftest names)."""

from enginelib import (  # noqa: F401
    client,
    dev_image,
    fashion_mnist,
    project_settings,
    restore_ctrl_c,
    rng,
    runtime_image,
    scratch,
)

restore_ctrl_c()
