"""``ENGINE = "tests.support.userengine"``: a user's own engine made with
``compose.real_pool_wrapper`` (the engine-identity tests use it)."""
