"""Clean exits of multi-rank (gloo) runs: after ``train()``, wait until the gloo worker threads are idle.

Otherwise a worker that frees a finished collective's tensor needs the GIL while CPython 3.11
finalizes and is ended through a ``noexcept`` destructor: ``std::terminate``, launcher rc 250
(cause and measurements: docs/troubleshooting.md, "terminate called without an active exception").
A worker is idle when ``/proc/self/task/<tid>/syscall`` shows a futex wait without timeout; the
wait is local to the rank (no collective). Where ``/proc`` cannot tell, it sleeps ``GRACE_S``.
"""
from __future__ import annotations

import functools
import logging
import os
import time

logger = logging.getLogger("plast_plugin.llava")

ENV_DISABLE_CLEAN_EXIT = "PLAST_DISABLE_CLEAN_EXIT"
GLOO_WORKER_THREAD = "pt_gloo_runloop"  # c10::setThreadName in ProcessGroupGloo::runLoop
IDLE_TIMEOUT_S = 120.0
GRACE_S = 0.2
_SYS_FUTEX = {"x86_64": "202", "aarch64": "98"}.get(os.uname().machine)  # futex's syscall number
_FUTEX_WAIT_BITSET = 9  # what pthread_cond_wait uses; a mutex lock uses FUTEX_WAIT (0)


def _uses_gloo(dist) -> bool:
    for group in list(dist.distributed_c10d._world.pg_names):
        try:
            if "gloo" in str(dist.get_backend(group)):
                return True
        except Exception:
            continue
    return False


def gloo_worker_tids() -> list[int]:
    """Thread ids of this process's gloo worker threads (empty where /proc is missing)."""
    tids = []
    try:
        entries = os.listdir("/proc/self/task")
    except OSError:
        return tids
    for entry in entries:
        try:
            with open(f"/proc/self/task/{entry}/comm") as f:
                if f.read().strip() == GLOO_WORKER_THREAD:
                    tids.append(int(entry))
        except (OSError, ValueError):
            continue  # the thread ended meanwhile
    return tids


def worker_state(tid: int) -> str:
    """'idle' (waiting on a condition variable without timeout: for new work), 'busy', 'gone',
    or 'unknown' (the syscall file cannot be read)."""
    try:
        with open(f"/proc/self/task/{tid}/syscall") as f:
            fields = f.read().split()
    except FileNotFoundError:
        return "gone"
    except OSError:
        return "unknown"
    if not fields or _SYS_FUTEX is None:
        return "unknown"
    if fields[0] != _SYS_FUTEX or len(fields) < 5:
        return "busy"  # running, or in another syscall (a gloo transfer)
    op, timeout = int(fields[2], 16), int(fields[4], 16)
    return "idle" if (op & 0x7F) == _FUTEX_WAIT_BITSET and timeout == 0 else "busy"


def wait_for_idle_gloo_workers(timeout_s: float = IDLE_TIMEOUT_S) -> str:
    """Block (GIL released) until every gloo worker thread is idle. Returns 'idle', 'no-gloo'
    (nothing to wait for), or 'grace' (could not tell; slept GRACE_S). Raises TimeoutError."""
    import torch.distributed as dist

    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() < 2 or not _uses_gloo(dist):
        return "no-gloo"
    # A worker names itself when it first runs, before it takes any work: one still unnamed
    # holds none. Listed again at each poll for that reason.
    tids = gloo_worker_tids()
    if not tids or any(worker_state(t) == "unknown" for t in tids):
        time.sleep(GRACE_S)
        return "grace"
    deadline = time.monotonic() + timeout_s
    idle_polls = 0
    while idle_polls < 2:  # twice in a row: a worker between two waits is not mistaken for idle
        states = [worker_state(t) for t in gloo_worker_tids()]
        idle_polls = idle_polls + 1 if all(s in ("idle", "gone") for s in states) else 0
        if time.monotonic() > deadline:
            raise TimeoutError(f"gloo worker threads still busy after {timeout_s:.0f} s: {states}")
        time.sleep(0.001)  # releases the GIL: a worker waiting for it gets it
    return "idle"


def wrap_train(module) -> None:
    """Wrap ``module.train`` (LLaVA's ``train()``) in place: after it returns on a rank of a
    multi-rank run, wait for the gloo workers to be idle so the process exits cleanly. Idempotent."""
    original = getattr(module, "train", None)
    if original is None or getattr(original, "__plast_wrapped__", False):
        return

    @functools.wraps(original)
    def train(*args, **kwargs):
        result = original(*args, **kwargs)
        if os.environ.get(ENV_DISABLE_CLEAN_EXIT, "").strip().lower() not in ("1", "true", "yes", "on"):
            try:
                wait_for_idle_gloo_workers()
            except Exception as err:  # never turn a finished training into a failure
                logger.warning("plast-plugin: gloo workers not idle before exit (%s); "
                               "the process may abort at exit (docs/troubleshooting.md)", err)
        return result

    train.__plast_wrapped__ = True
    module.train = train
