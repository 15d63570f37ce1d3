from fingerd.process.parent.states import BACKOFF_CAP, Backoff, backoff_delay


def test_the_delay_stays_at_the_cap_however_many_young_deaths():
    assert [backoff_delay(n) for n in (9, 1025, 1026, 10**6)] == [BACKOFF_CAP] * 4


def test_a_worker_dying_young_thousands_of_times_waits_the_cap():
    backoff = Backoff()
    delays = [backoff.after_death(uptime=0.0, served=False, status=0) for _ in range(2000)]
    assert delays[:3] == [0.0, 0.5, 1.0]
    assert delays[-1] == BACKOFF_CAP
