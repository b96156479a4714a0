"""``ENGINE = "tests.support.userengine_native"``: a user's own engine made with
``compose.real_pool_wrapper`` on Django's native pool (the engine-identity tests use it)."""
