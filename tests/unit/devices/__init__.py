import pytest

# The shared helpers assert; rewrite them like the tests so that a failure shows its values.
pytest.register_assert_rewrite("tests.unit.devices.helpers")
