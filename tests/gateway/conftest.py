"""Gateway tests use transactional databases: the data plane reads the database from its own
thread, which only sees committed rows. The live-server fixtures are in tests/conftest.py."""
