import pytest

from tests.web.reliability.shortcut import MADE


@pytest.fixture(autouse=True)
def _close_shortcuts():
    yield
    while MADE:
        MADE.pop().close()  # each shortcut holds a database connection of its own
