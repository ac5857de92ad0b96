"""A `plast select` killed (SIGKILL) at any point of writing its output leaves a selection file
and either its own plot or none, never the plot of another selection; the temporary files a
killed run leaves are removed by the next run."""

import os
import subprocess
import sys
import textwrap
from pathlib import Path

from plast_plugin.core.selection_file import ModelIdentity, SelectionFile
from plast_plugin.core.statistics import LayerRecord
from plast_plugin.pipeline import write_selection
from plast_plugin.plot import plot_selection

REPO = Path(__file__).resolve().parents[2]


def _selection(layers):
    records = [LayerRecord(layer=i, msd=0.1 * (i + 1), noise_msd=0.05, noise_overlap=0.9,
                           overlap={"zh": 0.5 + 0.05 * i}) for i in range(6)]
    return SelectionFile(selected_layers=layers, model=ModelIdentity("LlamaForCausalLM", 6, 128, 64, "tiny"),
                         rule="manual", layers=records)


# The child writes the new selection and kills itself (SIGKILL, no cleanup of any kind) just
# before its KILL_AT-th file removal or rename.
CHILD = textwrap.dedent("""
    import os, signal, sys
    sys.path.insert(0, {tests!r})
    from test_select_crash_safety import _selection
    from plast_plugin.pipeline import write_selection
    kill_at, calls = int(sys.argv[2]), [0]
    def kill_before(real):
        def wrapped(*args, **kwargs):
            calls[0] += 1
            if calls[0] == kill_at:
                os.kill(os.getpid(), signal.SIGKILL)
            return real(*args, **kwargs)
        return wrapped
    os.replace, os.unlink = kill_before(os.replace), kill_before(os.unlink)
    write_selection(_selection([4, 5]), sys.argv[1])
""")


def test_a_kill_at_any_write_point_never_pairs_a_selection_with_another_plot(tmp_path):
    refs = {}
    for layers in ([1, 2], [4, 5]):
        plot_selection(_selection(layers), tmp_path / f"ref{layers[0]}.png")
        refs[tuple(layers)] = (tmp_path / f"ref{layers[0]}.png").read_bytes()
    assert len(set(refs.values())) == 2
    child = tmp_path / "child.py"
    child.write_text(CHILD.format(tests=str(Path(__file__).parent)))
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])}
    outcomes = []
    for kill_at in range(1, 10):
        out = tmp_path / f"out{kill_at}"
        write_selection(_selection([1, 2]), out)  # an earlier result in --out
        proc = subprocess.run([sys.executable, str(child), str(out), str(kill_at)], env=env,
                              capture_output=True, text=True, timeout=120)
        assert proc.returncode in (0, -9), proc.stderr[-2000:]
        selected = tuple(SelectionFile.load(out).selected_layers)
        plot = out / "plast_layers.png"
        outcomes.append((proc.returncode, selected, plot.exists()))
        if plot.exists():
            assert plot.read_bytes() == refs[selected], f"killed at write {kill_at}: plot of another selection"
        # the next run cleans up what the killed one left and writes a consistent pair
        write_selection(_selection([4, 5]), out)
        assert sorted(p.name for p in out.iterdir()) == ["plast_layers.json", "plast_layers.png"], kill_at
        assert (out / "plast_layers.png").read_bytes() == refs[(4, 5)]
        if proc.returncode == 0:
            break
    assert outcomes[-1] == (0, (4, 5), True)  # the loop reached an uninterrupted write
    assert {o[:2] for o in outcomes} >= {(-9, (1, 2)), (-9, (4, 5))}  # killed before and after the JSON


def test_no_plot_removes_an_earlier_plot(tmp_path):
    write_selection(_selection([1, 2]), tmp_path)
    write_selection(_selection([4, 5]), tmp_path, plot=False)
    assert not (tmp_path / "plast_layers.png").exists()
