"""The validator's Alembic migrations, installed with the package (see ``env.py``)."""
