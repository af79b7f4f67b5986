"""The Python API: every exported name resolves and is documented; `import sfcli` stays light."""

import subprocess
import sys

import sfcli


def test_every_exported_name_resolves_and_has_a_docstring():
    for name in sfcli.__all__:
        value = getattr(sfcli, name)
        if callable(value):
            assert value.__doc__, name


def test_import_sfcli_loads_no_torch():
    code = "import sys, sfcli; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "False"


def test_save_model_and_load_model_round_trip(tmp_path):
    model = sfcli.create_model("slowfast_tiny", num_classes=3)
    sfcli.save_model(model, tmp_path / "m.pt", ["a", "b", "c"], arch="slowfast_tiny")
    loaded, info = sfcli.load_model(tmp_path / "m.pt")
    assert info.classes == ["a", "b", "c"] and info.arch == "slowfast_tiny"
    assert all((a == b).all() for a, b in zip(model.state_dict().values(), loaded.state_dict().values()))
