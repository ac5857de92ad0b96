"""The trainers `plast export-config` writes for, in a module without torch: the CLI builds its parser
from these before any command runs."""

TOOLS = ("axolotl", "swift", "llamafactory", "regex", "lmms-engine")
# The tools that cannot express every selection: --approximate lets them train a little more, loudly.
APPROXIMATING = ("llamafactory", "lmms-engine")
