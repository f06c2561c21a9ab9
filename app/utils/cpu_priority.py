"""A background role yields the CPU to the API on a host they share (WORKER_NICE, AGENT_NICE,
AGENT_CPU_POLICY).

No Flask here: the agent imports it.
"""
import errno
import logging
import os
import time

log = logging.getLogger("probeops")

NICE_MAX = 19
AUTOGROUP = "/proc/self/autogroup"
POLICIES = ("normal", "idle")


def lower_cpu_priority(nice):
    """Run every thread of this process, and those it starts later, at ``nice`` (0 to 19; 0: as is).

    Only ever lowers the priority. With kernel autogroup (sched_autogroup_enabled, the default of
    most distributions) the scheduler first shares the CPU between sessions, and a nice value
    only orders processes inside one: a role started in a session of its own (a supervisor's
    setsid, the bench, the tests) also sets its session's autogroup nice. Started from a
    terminal, it is not the session's leader and leaves the terminal's session alone. Inside a
    CPU cgroup (Docker, systemd's CPU controller) autogroup does not apply: the service's CPU
    weight orders it against the API there.
    """
    if not 0 <= nice <= NICE_MAX:
        raise ValueError(f"nice must be between 0 and {NICE_MAX}, not {nice}")
    if nice == 0:
        return
    try:
        threads = [int(tid) for tid in os.listdir("/proc/self/task")]
    except OSError:
        threads = [0]  # no /proc: this thread, which the threads started later inherit from
    for tid in threads:
        try:
            if os.getpriority(os.PRIO_PROCESS, tid) < nice:  # on Linux, PRIO_PROCESS takes a thread id
                os.setpriority(os.PRIO_PROCESS, tid, nice)
        except OSError:
            pass  # a thread that has just ended
    session = "its own session's autogroup too" if _lower_autogroup(nice) else "this process"
    log.info("running at nice %d (%s), below the API's CPU priority", nice, session)


def use_idle_policy():
    """Run every thread of this process, and those it starts later, under SCHED_IDLE.

    The kernel ranks SCHED_IDLE below any nice value: such a thread runs on CPU time the others
    leave and gives way to them as they wake, where a niced thread may first finish its time
    slice (milliseconds that a waiting request feels). No privilege is needed to take it, and
    none is given back: the process keeps it until it exits.
    """
    try:
        threads = [int(tid) for tid in os.listdir("/proc/self/task")]
    except OSError:
        threads = [0]
    for tid in threads:
        try:
            os.sched_setscheduler(tid, os.SCHED_IDLE, os.sched_param(0))
        except OSError:
            pass  # a thread that has just ended
    log.info("running under SCHED_IDLE: any other work on this host preempts it")


def _lower_autogroup(nice):
    """Set this session's autogroup nice when this process leads the session; True if it is at ``nice``."""
    if os.getsid(0) != os.getpid():
        return False
    for attempt in range(5):
        try:
            with open(AUTOGROUP) as autogroup:
                if int(autogroup.read().split()[-1]) >= nice:
                    return True  # never raise a session's priority
            with open(AUTOGROUP, "w") as autogroup:
                autogroup.write(str(nice))
            return True
        except (FileNotFoundError, ValueError, IndexError):
            return False  # a kernel without autogroup (or one that shows it otherwise)
        except OSError as exc:
            # EAGAIN: the kernel takes one autogroup change a moment from unprivileged processes
            if exc.errno != errno.EAGAIN or attempt == 4:
                log.warning("could not lower this session's autogroup to nice %d (%s)", nice, exc.strerror)
                return False
            time.sleep(0.2)
    return False
