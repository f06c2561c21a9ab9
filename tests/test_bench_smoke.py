"""The benchmark suite runs end to end (tiny sizes). Figures are printed, never asserted."""
import pytest

pytestmark = [pytest.mark.slow, pytest.mark.lab]


def test_bench_smoke_mode_produces_every_figure(lab_routes, postgres, redis_server, capsys):
    from bench.run import run

    figures = run(smoke=True, lab=lab_routes, postgres=postgres, redis_server=redis_server)
    names = " ".join(f.name for f in figures)
    for part in ("users/me", "history", "concurrent", "health", "RTT", "4-packet", "logins", "RSS",
                 "agents at once", "in flight", "first result through Celery", "through an agent"):
        assert part in names
    assert all(f.measured > 0 and f.baseline > 0 for f in figures)
    assert "ProbeOps benchmarks" in capsys.readouterr().out
