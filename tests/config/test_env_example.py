"""`.env.example` documents every setting the code reads."""

import re

from tests.utils.procs import REPO


def test_every_setting_read_from_the_environment_is_documented():
    code = (REPO / "config" / "settings.py").read_text()
    read = set(re.findall(r'env(?:\.\w+)?\(\s*"([A-Z_]+)"', code))
    read |= set(re.findall(r'_required_in_production\(\s*"([A-Z_]+)"', code))
    documented = set(re.findall(r"^#?\s*([A-Z_]+)=", (REPO / ".env.example").read_text(), re.M))
    assert read, "the pattern found no settings; update this test"
    assert read - documented == set()
