"""The hub's test fixtures (``broker``: a Kafka broker and schema registry for the session),
which the contract suite's broker tests take."""

pytest_plugins = ["tests.fixtures.stack"]
