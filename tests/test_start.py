"""The entrypoint's start, in-process: every row of the table of refusals (tests/bad_inputs.py) is
refused by `validate`, what the entrypoint runs before it writes anything."""

from __future__ import annotations

from pathlib import Path

import pytest

from entrypoint.errors import EXIT_CONFIG, ConfigError
from entrypoint.start import validate
from tests.bad_inputs import BAD_INPUTS, BadInput, leaks
from tests.material import ClusterMaterial


@pytest.mark.parametrize("bad", BAD_INPUTS, ids=lambda bad: bad.id)
def test_every_bad_input_is_refused_in_one_line(
    bad: BadInput, material: ClusterMaterial, tmp_path: Path
) -> None:
    """A ConfigError (exit 78) whose one line starts with the row's words and holds no secret."""
    env = bad.env(material, tmp_path)
    given = sorted(tmp_path.iterdir())
    with pytest.raises(ConfigError) as raised:
        validate(env)
    message = str(raised.value)
    assert raised.value.exit_code == EXIT_CONFIG
    assert message.startswith(bad.says_for(tmp_path)), message
    assert "\n" not in message and leaks(message, material, env) == []
    assert sorted(tmp_path.iterdir()) == given  # nothing written beside the row's own files
