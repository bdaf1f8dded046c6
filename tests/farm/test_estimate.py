"""The quiet-state estimator over rounds, its interval, paired ratios, and the scheduler's use of them."""

from __future__ import annotations

import math

import pytest

from farm.agent.measure import summarize
from farm.estimate import (
    QUIET_TOL,
    Round,
    enough_rounds,
    job_floor,
    low_level,
    paired_ratio,
    quiet_estimate,
    quiet_flags,
    t_quantile,
)
from farm.measurement import Measurement, Settings, merge_rounds, record_rounds
from farm.registry.spec import DeviceSpec
from farm.scheduler.core import Scheduler
from farm.store.sqlite import SqliteStore

from .fakes import ScriptedDevice, workload

SPEC = DeviceSpec(name="dev", url="local://cpu")


def rnd(median: float, ref: float | None = 20.0, share: float | None = 0.0, half: float = 0.002) -> Round:
    return Round(median, median - half, median + half, 100, ref, "t", "s", share)


# ---------------------------------------------------------------------------- quiet or slow


def test_a_round_is_quiet_when_its_reference_is_near_the_floor_and_the_probe_saw_little():
    rounds = [rnd(1.0, 20.0), rnd(1.0, 20.0 * (1 + QUIET_TOL) * 0.99), rnd(1.3, 30.0), rnd(1.2, 20.0, share=0.6)]
    assert quiet_flags(rounds, floor_us=20.0) == (True, True, False, False)


def test_rounds_without_readings_count_as_quiet():
    assert quiet_flags([rnd(1.0, None, None), rnd(2.0, None, None)], None) == (True, True)


def test_one_lucky_reading_does_not_set_the_floor():
    # the reference has a fast mode of its own (17 µs against 21 quiet): one such reading
    # among eight must not make the ordinary quiet rounds look slow
    refs = [21.0, 21.5, 22.0, 20.8, 17.0, 21.2, 22.4, 21.9]
    assert low_level(refs) == 21.0  # the lower quartile by rank: the third lowest of eight
    rounds = [rnd(1.0, r) for r in refs]
    assert all(quiet_flags(rounds, None))
    assert job_floor(rounds, None) == 21.0


def test_the_device_floor_from_history_exposes_a_job_slow_throughout():
    slow = [rnd(1.4 + 0.01 * i, 30.0 + i) for i in range(6)]
    assert not any(quiet_flags(slow, floor_us=20.0))
    assert all(quiet_flags(slow, floor_us=None)), "without history the job's own level is all it has"


def test_a_job_quieter_than_its_history_is_judged_by_itself():
    rounds = [rnd(1.0, 15.0), rnd(1.0, 15.5), rnd(1.3, 21.0)]
    assert job_floor(rounds, floor_us=20.0) == 15.5  # the rounds' median reading, below the history's
    assert quiet_flags(rounds, floor_us=20.0) == (True, True, False)


# ---------------------------------------------------------------------------- the estimate


def test_the_estimate_is_the_quietest_half_of_the_rounds():
    rounds = [rnd(1.00), rnd(1.01), rnd(1.02), rnd(1.03), rnd(1.04), rnd(1.05),
              rnd(1.50, ref=40.0), rnd(1.30, share=0.9)]
    est = quiet_estimate(rounds, floor_us=20.0, need=3)
    assert not est.unstable and est.reason == ""
    assert est.quiet == (True,) * 6 + (False, False)
    assert est.used == (True, True, True, True, False, False, False, False)
    assert est.median_ms == pytest.approx(1.015)
    assert est.ci_low_ms < 1.015 < est.ci_high_ms


def test_slow_rounds_do_not_move_the_estimate_pooling_would():
    quiet = [rnd(1.0 + 0.002 * i) for i in range(5)]
    slow = [rnd(1.45, ref=35.0, share=0.4) for _ in range(5)]
    est = quiet_estimate(quiet + slow, 20.0, need=3)
    assert est.median_ms == pytest.approx(1.004)
    pooled = sorted(r.median_ms for r in quiet + slow)
    assert (pooled[4] + pooled[5]) / 2 > 1.2  # what a pooled median of these rounds would say


def test_fewer_quiet_rounds_than_wanted_is_unstable_and_says_so():
    rounds = [rnd(1.0), rnd(1.4, ref=35.0), rnd(1.5, ref=36.0)]
    est = quiet_estimate(rounds, 20.0, need=3)
    assert est.unstable and "only 1 of 3 rounds ran quiet" in est.reason
    # an unstable figure's interval covers every round kept
    assert est.ci_low_ms <= 1.0 - 0.002 and est.ci_high_ms >= 1.5 + 0.002


def test_every_round_slow_against_the_device_floor_is_unstable():
    rounds = [rnd(1.4, 31.0), rnd(1.5, 33.0), rnd(1.45, 32.0)]
    est = quiet_estimate(rounds, floor_us=20.0, need=1)
    assert est.unstable and "every round ran slow" in est.reason and "+55%" in est.reason
    assert est.median_ms == pytest.approx(1.425)  # the quietest half of what there is: 2 of 3 rounds
    assert est.used == (True, False, True) and not any(est.quiet)
    assert est.ci_high_ms >= 1.5  # the interval covers every round


def test_the_interval_widens_with_the_spread_between_rounds_and_is_deterministic():
    tight = [rnd(1.0 + 0.001 * (i % 3)) for i in range(6)]
    wide = [rnd(1.0 + 0.03 * (i % 3)) for i in range(6)]
    t, w = quiet_estimate(tight, 20.0), quiet_estimate(wide, 20.0)
    assert t.half_width < w.half_width
    assert quiet_estimate(wide, 20.0) == w  # a fixed bootstrap seed: same rounds, same interval
    one = quiet_estimate([rnd(2.0, half=0.05)], None)
    assert (one.ci_low_ms, one.ci_high_ms) == (1.95, 2.05)
    two = quiet_estimate([rnd(2.0), rnd(2.1)], None)
    assert two.ci_low_ms <= 2.0 - 0.05 and two.ci_high_ms >= 2.0 + 0.05


def test_t_quantiles():
    assert t_quantile(1) == pytest.approx(12.706)
    assert t_quantile(4) == pytest.approx(2.776)
    assert 1.96 < t_quantile(100) < t_quantile(30) < t_quantile(11)
    with pytest.raises(ValueError):
        t_quantile(0)


def test_enough_rounds_wants_the_quiet_ones_and_a_narrow_interval():
    quiet = [rnd(1.0), rnd(1.001), rnd(1.002)]
    assert enough_rounds(quiet, 20.0, need=3, max_rounds=10, target_ci=0.01)
    assert not enough_rounds(quiet[:2], 20.0, need=3, max_rounds=10, target_ci=0.01)
    slowish = quiet[:2] + [rnd(1.4, ref=40.0)]
    assert not enough_rounds(slowish, 20.0, need=3, max_rounds=10, target_ci=0.01)
    assert enough_rounds(slowish, 20.0, need=3, max_rounds=3, target_ci=0.01), "max_rounds ends it"
    spread = [rnd(1.0), rnd(1.1), rnd(0.95)]
    assert not enough_rounds(spread, 20.0, need=3, max_rounds=10, target_ci=0.01)
    assert enough_rounds(spread, 20.0, need=3, max_rounds=10, target_ci=0.0), "target 0: any interval"


# ---------------------------------------------------------------------------- paired


def test_pairing_cancels_a_state_both_models_saw():
    states = [1.0, 1.3, 1.05, 1.45, 1.0, 1.2, 1.1, 1.02]
    a = [rnd(2.0 * s) for s in states]
    b = [rnd(1.6 * s) for s in states]
    r = paired_ratio(a, b)
    assert r.ratio == pytest.approx(0.8) and not r.unstable and r.pairs == 8
    assert r.ci_low == pytest.approx(0.8) and r.ci_high == pytest.approx(0.8)
    # measured separately, the same two models could differ by the states alone: 2.0 vs 1.6*1.45
    assert (1.6 * 1.45) / 2.0 > 1.1


def test_pairs_use_the_rounds_both_ran_quiet_and_say_when_too_few_did():
    a = [rnd(2.0), rnd(2.02), rnd(1.98), rnd(3.0, ref=40.0)]
    b = [rnd(1.0), rnd(1.01), rnd(0.99), rnd(1.0)]
    r = paired_ratio(a, b)
    assert r.pairs == 3 and r.ratio == pytest.approx(0.5) and r.per_round[3] == pytest.approx(1 / 3)
    few = paired_ratio(a[2:], b[2:])
    assert few.unstable and few.pairs == 2
    assert math.isinf(paired_ratio(a[:1], b[:1]).ci_high)
    with pytest.raises(ValueError):
        paired_ratio([], b)


# ---------------------------------------------------------------------------- settings and records


def test_settings_keep_the_first_releases_keys_and_name_the_estimator_otherwise():
    assert Settings().to_dict().keys() == {"runtime", "threads", "affinity", "policy"}
    q = Settings(rounds=3, max_rounds=10, estimator="quiet")
    assert q.to_dict()["estimator"] == "quiet" and q.to_dict()["max_rounds"] == 10
    assert Settings.from_dict(q.to_dict()) == q and q.hash != Settings(rounds=3).hash
    assert Settings.from_dict({"runtime": "onnxruntime", "threads": 1, "rounds": 3}).estimator == "pooled"
    assert q.in_rounds and q.round_limit == 10
    assert Settings(estimator="quiet").in_rounds, "a quiet job's first round may call for another"
    assert not Settings().in_rounds
    with pytest.raises(ValueError, match="estimator"):
        Settings(estimator="mean")
    with pytest.raises(ValueError, match="max_rounds"):
        Settings(rounds=3, max_rounds=2, estimator="quiet")
    with pytest.raises(ValueError, match="max_rounds"):
        Settings(rounds=3, max_rounds=5)  # pooled never adds rounds


def _round(samples: list[float], ref: float, share: float = 0.0, at: str = "t", session: str = "p-1") -> Measurement:
    return Measurement("dev", "w", Settings(), summarize(samples), tuple(samples), (), (0.5,), "converged",
                       {"measured_at": at, "session": session, "contention": {"contended_share": share},
                        "reference": {"before_us": ref * 0.98, "after_us": ref, "workload": "x"}})


def test_a_quiet_record_keeps_every_round_and_says_which_ran_quiet():
    settings = Settings(rounds=2, max_rounds=6, estimator="quiet")
    rounds = [_round([1.0, 1.01, 0.99, 1.0], 20.0, at="t1", session="p-1"),
              _round([1.5, 1.52, 1.49, 1.5], 32.0, at="t2", session="p-2"),
              _round([1.02, 1.01, 1.03, 1.02], 20.5, at="t3", session="p-3")]
    m = merge_rounds(rounds, settings, floor_us=20.0)
    p = m.provenance
    assert p["estimator"] == "quiet" and p["unstable"] is False and "unstable_reason" not in p
    assert [r["quiet"] for r in p["rounds"]] == [True, False, True]
    assert [r["session"] for r in p["rounds"]] == ["p-1", "p-2", "p-3"]
    assert p["rounds"][1]["reference_us"] == 32.0 and p["rounds"][1]["ci95"][0] <= 1.5
    assert p["reference"]["floor_us"] == 20.0 and p["reference"]["min_us"] == 20.0
    assert p["reference"]["level_us"] == 20.5
    assert m.samples_ms == sum((r.samples_ms for r in rounds), ())  # every run kept ...
    assert m.outliers == (4, 5, 6, 7)  # ... the slow round's left out of the statistics
    assert m.stats.median_ms == pytest.approx(quiet_estimate(record_rounds(m), 20.0, need=2).median_ms)
    assert m.stats.n == 8 and m.stop_reason == "3 rounds"
    # the stored per-round rows are enough to recompute the estimate
    assert quiet_estimate(record_rounds(m), 20.0, need=2).median_ms == pytest.approx(m.latency_ms)


def test_a_record_slow_throughout_is_marked_unstable():
    settings = Settings(rounds=1, max_rounds=2, estimator="quiet")
    m = merge_rounds([_round([1.5, 1.5, 1.5], 31.0), _round([1.6, 1.6, 1.6], 33.0)], settings, floor_us=20.0)
    assert m.provenance["unstable"] is True and "every round ran slow" in m.provenance["unstable_reason"]


def test_rounds_without_runs_merge_from_their_statistics():
    stats_only = [Measurement("dev", "w", Settings(), summarize([x, x, x]), (), (), (), "tool",
                              {"reference": None}) for x in (1.0, 1.2, 1.1)]
    m = merge_rounds(stats_only + stats_only[1:2], Settings(rounds=3, estimator="quiet"))
    assert m.stats.median_ms == pytest.approx(1.05)  # the quietest half of 1.0, 1.2, 1.1, 1.2: 1.0 and 1.1
    assert m.provenance["rounds"][1]["quiet"] and m.stats.n == 6  # the runs of the two rounds used
    pooled = merge_rounds(stats_only, Settings(rounds=3))
    assert pooled.stats.median_ms == pytest.approx(1.1) and pooled.stats.n == 9


# ---------------------------------------------------------------------------- the scheduler


class StateDevice(ScriptedDevice):
    """Runs as fast as its script of states says: each run a state (reference µs, slowdown)."""

    def __init__(self, spec, states) -> None:
        super().__init__(spec)
        self.states = list(states)

    def run(self, w, settings):
        super().run(w, settings)
        ref, slow = self.states.pop(0) if self.states else (20.0, 1.0)
        samples = [slow * x for x in (1.0, 1.01, 0.99, 1.0, 1.0)]
        return Measurement(SPEC.name, w.hash, settings, summarize(samples), tuple(samples), (), (), "converged",
                           {"measured_at": "t", "session": f"s{len(self.calls)}",
                            "reference": {"before_us": ref, "after_us": ref}})


def test_the_scheduler_adds_rounds_until_enough_ran_quiet(tmp_path):
    store = SqliteStore(tmp_path / "q.db")
    dev = StateDevice(SPEC, [(20.0, 1.0), (34.0, 1.5), (35.0, 1.5)] + [(20.2, 1.0)] * 7)
    sched = Scheduler(store, device_factory=lambda spec: dev, slow_pause_s=0.0)
    w = workload()
    sub = sched.submit(SPEC, w, Settings(rounds=3, max_rounds=10, estimator="quiet"))
    report = sched.run([SPEC], job_ids={sub.job.id}, workloads={w.hash: w})
    m = report.done[sub.job.id]
    assert 5 <= len(dev.calls) < 10, "the slow rounds were measured again, and the rounds stopped once enough ran quiet"
    assert m.provenance["unstable"] is False and m.latency_ms == pytest.approx(1.0)
    # the next job on this device is judged against the floor its records now carry
    assert store.reference_floor(SPEC.name) == pytest.approx(20.2)  # the record's median reading


def test_a_device_slow_throughout_ends_at_max_rounds_marked_unstable(tmp_path):
    store = SqliteStore(tmp_path / "q.db")
    quiet = StateDevice(SPEC, [(20.0, 1.0)])
    sched = Scheduler(store, device_factory=lambda spec: quiet, slow_pause_s=0.0)
    w = workload()
    sched.run([SPEC], job_ids={sched.submit(SPEC, w, Settings(estimator="quiet")).job.id}, workloads={w.hash: w})
    slow = StateDevice(SPEC, [(31.0, 1.4)] * 10)
    sched = Scheduler(store, device_factory=lambda spec: slow, slow_pause_s=0.0)
    sub = sched.submit(SPEC, w, Settings(rounds=2, max_rounds=4, estimator="quiet"), force=True)
    m = sched.run([SPEC], job_ids={sub.job.id}, workloads={w.hash: w}).done[sub.job.id]
    assert len(slow.calls) == 4 and m.provenance["unstable"] is True
    assert store.dataset_rows()[-1]["unstable"] is True and store.dataset_rows()[0]["unstable"] is False


def test_a_model_slower_than_its_own_history_is_not_quiet_even_when_the_reference_is():
    # a neighbour in the shared L3 slows the model, not the cache-sized reference
    rounds = [rnd(1.30), rnd(1.32), rnd(1.31)]
    assert all(quiet_flags(rounds, 20.0))
    assert not any(quiet_flags(rounds, 20.0, model_floor_ms=1.0))
    est = quiet_estimate(rounds, 20.0, need=2, model_floor_ms=1.0)
    assert est.unstable and "+30% against this model's earlier records" in est.reason
    assert quiet_flags([rnd(1.04)], 20.0, model_floor_ms=1.0) == (True,)


def test_a_repeat_measurement_that_lands_in_a_slow_spell_waits_it_out(tmp_path):
    store = SqliteStore(tmp_path / "q.db")
    w = workload()
    settings = Settings(rounds=2, max_rounds=8, estimator="quiet")
    first = StateDevice(SPEC, [(20.0, 1.0)] * 3)
    sched = Scheduler(store, device_factory=lambda spec: first, slow_pause_s=0.0)
    sched.run([SPEC], job_ids={sched.submit(SPEC, w, settings).job.id}, workloads={w.hash: w})
    # the reference reads quiet throughout, but the model runs 30% slower for four rounds
    spell = StateDevice(SPEC, [(20.0, 1.3)] * 4 + [(20.0, 1.0)] * 4)
    sched = Scheduler(store, device_factory=lambda spec: spell, slow_pause_s=0.0)
    sub = sched.submit(SPEC, w, settings, force=True)
    m = sched.run([SPEC], job_ids={sub.job.id}, workloads={w.hash: w}).done[sub.job.id]
    assert len(spell.calls) >= 6 and m.latency_ms == pytest.approx(1.0) and m.provenance["unstable"] is False
    assert m.provenance["reference"]["model_floor_ms"] == pytest.approx(1.0)
