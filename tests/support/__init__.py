"""What the tests share: test servers, scripted models and the helpers every tier uses.

Importable as `support.<module>` because tests/conftest.py puts tests/ on sys.path.
"""

from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
"""The repository: the app's page script and the sample essay are read from here."""
