# What the `plast-llava-hook.pth` line runs (setup.py embeds this text) at every interpreter start:
# no module of the plugin is imported until LLaVA's training module is. Keep it tiny, standard-library
# only, and free of anything that could raise at start (site prints a traceback for it).
import os as _os
import sys as _sys


class PlastLlavaHookBootstrap:
    """Stands first in sys.meta_path until ``llava.train.train`` is imported, then hands over to the
    real hook (plast_plugin.llava.hook) and steps aside; a broken plugin costs one line, not a traceback."""

    target = "llava.train.train"

    def find_spec(self, fullname, path=None, target=None):
        if fullname != self.target:
            return None
        if self in _sys.meta_path:
            _sys.meta_path.remove(self)
        try:
            from plast_plugin.llava.hook import install_finder
        except Exception as err:
            _sys.stderr.write("plast-plugin: PLAST not added to %s (%s: %s); --plast_* flags will be refused. "
                              "Reinstall plast-plugin or set PLAST_DISABLE_HOOK=1\n" % (fullname, type(err).__name__, err))
            return None
        return install_finder().find_spec(fullname, path, target)


if _os.environ.get("PLAST_DISABLE_HOOK", "").strip().lower() not in ("1", "true", "yes", "on") and not any(
        type(f).__name__ in ("PlastLlavaHookBootstrap", "LlavaTrainFinder") for f in _sys.meta_path):
    _sys.meta_path.insert(0, PlastLlavaHookBootstrap())
