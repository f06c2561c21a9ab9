"""A background role yields the CPU to the API on a host they share (WORKER_NICE, AGENT_NICE).

No Flask here: the agent imports it.
"""
import logging
import os

log = logging.getLogger("probeops")

NICE_MAX = 19


def lower_cpu_priority(nice):
    """Run every thread of this process, and those it starts later, at ``nice`` (0 to 19; 0: as is).

    With kernel autogroup (sched_autogroup_enabled, the default of most distributions) the
    scheduler first shares the CPU between sessions, and a nice value only orders processes
    inside one session: a role started in a session of its own (a supervisor's setsid, the
    bench, the tests) also sets its session's autogroup nice. Started from a terminal, it is not
    the session's leader and leaves the terminal's session alone.
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
    if os.getsid(0) == os.getpid():
        try:
            with open("/proc/self/autogroup", "w") as autogroup:
                autogroup.write(str(nice))
        except OSError:
            pass  # no autogroup in this kernel, or a container that hides it
    log.info("running at nice %d (below the API's CPU priority)", nice)
