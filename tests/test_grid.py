"""Grid planning: every task x case x condition x model x mode once, with ids that survive re-planning."""

from __future__ import annotations

import pytest

from harness.engine.grid import Condition, plan_grid, sample_id, stage_totals

ORIGINAL = Condition("original", {"name": "original", "version": "1"})
REFACE = Condition("reface", {"name": "reface", "version": "0.3", "params": {"feather": 1.5}})
QUICKSHEAR = Condition("quickshear", {"name": "quickshear", "version": "1.2"})


def test_full_grid_with_the_reference_first_for_each_case():
    grid = plan_grid({"ct-report": ["a", "b"], "nph-evans": ["x"]}, [REFACE, QUICKSHEAR, ORIGINAL],
                     ["scripted", "openai:gpt"], modes=("agent", "single"))
    assert len(grid.items) == 3 * 3 * 2 * 2 and grid.duplicates == 0
    assert len({i.sample_id for i in grid.items}) == len(grid.items)
    first = grid.items[:3]
    assert [(i.task, i.case_id, i.model, i.mode) for i in first] == [("ct-report", "a", "scripted", "agent")] * 3
    assert [i.condition for i in first] == ["original", "reface", "quickshear"]
    assert first[1].defacer == REFACE.identity and first[0].is_reference and not first[1].is_reference


def test_ids_are_stable_across_plans_and_change_with_what_decides_the_outcome():
    def ids(**kw):
        args = dict(cases={"t": ["a"]}, conditions=[ORIGINAL, REFACE], models=["m"])
        args.update(kw)
        return [i.sample_id for i in plan_grid(**args).items]

    assert ids() == ids()
    assert ids(conditions=[REFACE, ORIGINAL]) == ids()  # order of the options does not matter
    bumped = Condition("reface", {**REFACE.identity, "version": "0.4"})
    assert ids(conditions=[ORIGINAL, bumped])[0] == ids()[0]  # the reference sample is untouched
    assert ids(conditions=[ORIGINAL, bumped])[1] != ids()[1]  # a new defacer version is a new sample
    assert ids(model_identities={"m": {"name": "m", "revision": "abc"}}) != ids()
    assert ids(task_identities={"t": {"name": "t", "prompt_hash": "123"}}) != ids()
    assert ids(modes=("single",)) != ids()
    assert len(ids()[0]) == 32 and ids()[0] == sample_id({"name": "t"}, "a", ORIGINAL.identity, {"name": "m"}, "agent")


def test_defacer_parameters_are_part_of_the_id():
    """quickshear(buffer_mm=5) and quickshear(buffer_mm=20) are different samples: a resumed run must not take one's
    answers for the other's."""
    def shear(buffer_mm):
        return Condition(f"quickshear(buffer_mm={buffer_mm})",
                         {"name": "quickshear", "version": "1.2", "params": {"buffer_mm": float(buffer_mm)}})

    def defaced_id(*conditions):
        return [i.sample_id for i in plan_grid({"t": ["a"]}, [ORIGINAL, *conditions], ["m"]).items][1:]

    (five,), (twenty,) = defaced_id(shear(5)), defaced_id(shear(20))
    assert five != twenty and defaced_id(shear(5), shear(20)) == [five, twenty]
    assert defaced_id(shear(5)) == [five]


def test_repeated_cases_defacers_and_models_are_planned_once():
    grid = plan_grid({"t": ["a", "a", "b"]}, [ORIGINAL, REFACE, REFACE], ["m", "m"])
    assert len(grid.items) == 2 * 2
    assert grid.duplicates == 3 * 3 * 2 - 4


def test_the_reference_condition_is_required_and_names_are_unambiguous():
    with pytest.raises(ValueError, match="'original' reference"):
        plan_grid({"t": ["a"]}, [REFACE], ["m"])
    with pytest.raises(ValueError, match="reface.*different identities"):
        plan_grid({"t": ["a"]}, [ORIGINAL, REFACE, Condition("reface", {"name": "reface", "version": "9"})], ["m"])


def test_condition_without_identity_uses_its_name():
    (item,) = plan_grid({"t": ["a"]}, [Condition("original")], ["m"]).items
    assert item.defacer == {"name": "original"}


def test_stage_totals_count_each_deface_and_render_once():
    grid = plan_grid({"t": ["a", "b"]}, [ORIGINAL, REFACE, QUICKSHEAR], ["m1", "m2"])
    assert stage_totals(grid.items) == {"deface": 2 * 2, "render": 2 * 3, "model": 12, "score": 12}


def test_sample_ids_do_not_change_between_harness_versions():
    """Ids are written into samples.jsonl: a run started by an earlier version must resume with the same ids, so the
    id of a known item is pinned (changing the recipe would silently re-run every finished sample)."""
    assert sample_id({"name": "t"}, "a", {"name": "original"}, {"name": "m"}, "agent") == "a1f682f0525fe61dd481c0e80cb53248"
    assert sample_id({"name": "ct-report", "version": "1"}, "case-001",
                     {"name": "quickshear", "version": "1.2", "params": {"buffer_mm": 5.0}},
                     {"name": "openai:gpt-4o", "revision": "x"}, "single") == "3c484ddc6938645075bdb63ee006dc9b"


def test_a_condition_without_identity_is_the_same_as_one_naming_itself():
    grid = plan_grid({"t": ["a"]}, [Condition("original"), Condition("original", {"name": "original"})], ["m"])
    assert len(grid.items) == 1 and grid.duplicates == 1


class _Statuses:
    def __init__(self, statuses):
        self.statuses = statuses

    def status_of(self, sample_id):
        return self.statuses.get(sample_id)


def test_resume_plan_counts_every_finished_failed_and_new_item():
    from harness.engine.grid import resume_plan

    items = plan_grid({"t": ["a", "b", "c", "d"]}, [ORIGINAL, REFACE], ["m"]).items
    statuses = {items[0].sample_id: "ok", items[1].sample_id: "unparsable", items[2].sample_id: "failed",
                items[3].sample_id: "failed", items[4].sample_id: "failed"}
    plan = resume_plan(items, _Statuses(statuses))
    assert (plan.done, plan.skipped_failed, plan.retried) == (2, 3, 0)
    assert plan.todo == items[5:] and plan.total == len(items)
    retry = resume_plan(items, _Statuses(statuses), retry_failed=True)
    assert (retry.done, retry.skipped_failed, retry.retried) == (2, 0, 3)
    assert retry.todo == items[2:] and retry.total == len(items)
