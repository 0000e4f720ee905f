"""Oracle tests: registers the ``zoo`` marker (the darknet cfg zoo subset, test_zoo.py)."""


def pytest_configure(config):
    config.addinivalue_line(
        "markers", "zoo: darknet cfg zoo subset (tests/oracle/test_zoo.py), small inputs"
    )
