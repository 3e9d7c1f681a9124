"""README stays true to the code: every setting documented, the two commands given."""
from pathlib import Path

from shared.config import SETTINGS

ROOT = Path(__file__).resolve().parent.parent
README = (ROOT / "README.md").read_text(encoding="utf-8")


def test_every_setting_is_documented():
    missing = [name for name in SETTINGS if f"`{name}`" not in README]
    assert missing == []


def test_quick_start_gives_the_two_commands_and_ci_runs_the_test_one():
    assert "make demo" in README and "make test" in README
    assert "make test" in (ROOT / ".ci" / "run").read_text()
