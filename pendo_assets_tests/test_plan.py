"""The load plan: which export's files make up each table-day, under every update Pendo sends."""

from datetime import date

from hypothesis import given, settings
from hypothesis import strategies as st

from pendo_assets.pendo.models import MatchedSlice
from pendo_assets.pendo.plan import build_sources, plan_day, plan_definitions, tables_touched
from pendo_assets.pendo.tables import DefinitionTable, EventTable, MatchableType
from pendo_assets_tests.builders import export, matched, period

P = date(2024, 4, 7)
OTHER = date(2024, 4, 14)


def content(plan, table):
    return {(s.counter, s.matchable_id, s.files) for s in plan.tables[table].slices}


def test_a_single_export_loads_its_slices():
    plan = plan_day([export(1, period(P, 10, matched("Page/a", 3), matched("Feature/b", 2)))], P)
    assert content(plan, EventTable.ALLEVENTS) == {(1, None, ("allevents.avro",))}
    assert content(plan, EventTable.MATCHEDPAGEEVENTS) == {(1, "a", ("matchedEvents/Page/a.avro",))}
    assert plan.tables[EventTable.MATCHEDFEATUREEVENTS].expected_rows == 2
    assert plan.tables[EventTable.MATCHEDTRACKTYPEEVENTS].slices == ()
    assert plan.tables[EventTable.MATCHEDTRACKTYPEEVENTS].expected_rows == 0


def test_finalized_reexport_replaces_the_whole_day_including_vanished_matchables():
    unfinalized = export(1, period(P, 10, matched("Page/a", 3), matched("Feature/b", 2)))
    finalized = export(9, period(P, 12, matched("Page/a", 4)), period(OTHER, 5))
    plan = plan_day([finalized, unfinalized], P)
    assert content(plan, EventTable.ALLEVENTS) == {(9, None, ("allevents.avro",))}
    assert plan.tables[EventTable.ALLEVENTS].expected_rows == 12
    assert content(plan, EventTable.MATCHEDPAGEEVENTS) == {(9, "a", ("matchedEvents/Page/a.avro",))}
    assert content(plan, EventTable.MATCHEDFEATUREEVENTS) == set()
    assert plan.tables[EventTable.MATCHEDFEATUREEVENTS].touched_by == (1, 9)


def test_retroactive_export_replaces_listed_matchables_and_empty_lists_delete():
    base = export(1, period(P, 10, matched("Page/a", 3), matched("Feature/b", 2), matched("Feature/c", 1)))
    retro = export(2, period(P, None, matched("Feature/b", 5, ("retro/b.avro",)), matched("Page/a", 0)), retro=True)
    plan = plan_day([base, retro], P)
    assert content(plan, EventTable.ALLEVENTS) == {(1, None, ("allevents.avro",))}
    assert content(plan, EventTable.MATCHEDPAGEEVENTS) == set()
    assert content(plan, EventTable.MATCHEDFEATUREEVENTS) == {
        (2, "b", ("retro/b.avro",)), (1, "c", ("matchedEvents/Feature/c.avro",))}
    assert plan.tables[EventTable.MATCHEDFEATUREEVENTS].expected_rows == 6
    assert plan.tables[EventTable.ALLEVENTS].touched_by == (1,)
    assert plan.tables[EventTable.MATCHEDFEATUREEVENTS].touched_by == (1, 2)


def test_retroactive_export_before_the_finalized_copy_is_superseded_by_it():
    base = export(1, period(P, 10, matched("Feature/b", 2)))
    retro = export(2, period(P, None, matched("Feature/b", 7, ("retro/b.avro",))), retro=True)
    finalized = export(3, period(P, 11, matched("Feature/b", 3)))
    plan = plan_day([base, retro, finalized], P)
    assert content(plan, EventTable.MATCHEDFEATUREEVENTS) == {(3, "b", ("matchedEvents/Feature/b.avro",))}


def test_retroactive_slices_for_a_day_never_loaded_with_all_events_start_from_empty():
    plan = plan_day([export(5, period(P, None, matched("Page/a", 4)), retro=True)], P)
    assert plan.tables[EventTable.ALLEVENTS].slices == ()
    assert content(plan, EventTable.MATCHEDPAGEEVENTS) == {(5, "a", ("matchedEvents/Page/a.avro",))}


def test_multi_file_day_keeps_every_file_and_the_slice_count():
    files = ("allevents-000.avro", "allevents-001.avro", "allevents-002.avro")
    plan = plan_day([export(1, period(P, 30, files=files))], P)
    (s,) = plan.tables[EventTable.ALLEVENTS].slices
    assert s.files == files and plan.tables[EventTable.ALLEVENTS].expected_rows == 30


def test_same_day_twice_in_one_export_applies_in_array_order():
    entry = export(4, period(P, 10, matched("Page/a", 3)), period(P, None, matched("Page/a", 0)))
    assert content(plan_day([entry], P), EventTable.MATCHEDPAGEEVENTS) == set()


def test_counter_order_not_list_order_decides_and_gaps_do_not_matter():
    older, newer = export(3, period(P, 10)), export(17, period(P, 11))
    assert plan_day([newer, older], P).tables[EventTable.ALLEVENTS].expected_rows == 11


def test_unknown_counts_make_the_expectation_unknown():
    no_count = MatchedSlice(MatchableType.PAGE, "a", ("a.avro",), None)
    plan = plan_day([export(2, period(P, 10, no_count))], P)
    assert plan.tables[EventTable.ALLEVENTS].expected_rows == 10
    assert plan.tables[EventTable.MATCHEDPAGEEVENTS].expected_rows is None


def test_tables_touched_by_an_export():
    entry = export(2, period(P, None, matched("Feature/b", 1)), period(OTHER, 3), retro=True)
    assert tables_touched(entry) == {P: frozenset({EventTable.MATCHEDFEATUREEVENTS}), OTHER: frozenset(EventTable)}


def test_definitions_are_the_latest_snapshot_upserted_by_later_retroactive_files():
    plans = plan_definitions([
        export(1), export(2, retro=True, definitions=(DefinitionTable.PAGES,)), export(3),
        export(4, retro=True, definitions=(DefinitionTable.FEATURES,)),
        export(5, retro=True, definitions=(DefinitionTable.FEATURES,)),
    ])
    assert plans[DefinitionTable.PAGES].snapshot.counter == 3 and plans[DefinitionTable.PAGES].upserts == ()
    assert [u.counter for u in plans[DefinitionTable.FEATURES].upserts] == [4, 5]
    assert plans[DefinitionTable.FEATURES].touched_by == (1, 3, 4, 5)


def test_definitions_from_retroactive_exports_only_are_upserts_onto_nothing():
    plans = plan_definitions([export(8, retro=True, definitions=(DefinitionTable.GUIDES,))])
    assert plans[DefinitionTable.GUIDES].snapshot is None
    assert [u.counter for u in plans[DefinitionTable.GUIDES].upserts] == [8]
    assert plans[DefinitionTable.PAGES].touched_by == ()


MATCHABLES = ["Page/a", "Page/b", "Feature/c", "TrackType/d"]
DAYS = [P, OTHER]


@st.composite
def export_histories(draw):
    counters = sorted(draw(st.sets(st.integers(1, 60), min_size=1, max_size=8)))
    exports = []
    for counter in counters:
        periods = []
        for _ in range(draw(st.integers(1, 3))):
            has_all = draw(st.booleans())
            slices = [matched(key, n, files=tuple(f"{counter}/{key}-{i}.avro" for i in range(n)))
                      for key, n in draw(st.dictionaries(st.sampled_from(MATCHABLES), st.integers(0, 2))).items()]
            periods.append(period(draw(st.sampled_from(DAYS)), counter if has_all else None, *slices,
                                  files=(f"{counter}/allevents.avro",)))
        exports.append(export(counter, *periods, retro=draw(st.booleans())))
    return exports


def replay(exports, day):
    """Pendo's rules applied one block at a time, the way a careful loader would do it by hand."""
    all_events, matched_rows = None, {}
    for entry in sorted(exports, key=lambda e: e.counter):
        for p in entry.periods_for(day):
            if p.all_events is not None:
                all_events, matched_rows = (entry.counter, p.all_events.files), {}
                for m in p.matched_events:
                    matched_rows.setdefault(m.key, set()).update(m.files)
                continue
            replaced = {}
            for m in p.matched_events:
                replaced.setdefault(m.key, set()).update(m.files)
            matched_rows.update(replaced)
    return all_events, {k: v for k, v in matched_rows.items() if v}


@settings(max_examples=300, deadline=None)
@given(export_histories(), st.randoms())
def test_plan_equals_replaying_every_export_in_counter_order(exports, random):
    shuffled = list(exports)
    random.shuffle(shuffled)
    for day in DAYS:
        plan = plan_day(shuffled, day)
        expected_all, expected_matched = replay(exports, day)
        all_slices = plan.tables[EventTable.ALLEVENTS].slices
        assert ((all_slices[0].counter, all_slices[0].files) if all_slices else None) == expected_all
        planned = {}
        for table in EventTable:
            if table.is_matched:
                for s in plan.tables[table].slices:
                    assert s.table is table
                    planned.setdefault(f"{s.matchable_type.value}/{s.matchable_id}", set()).update(s.files)
        assert planned == expected_matched


@settings(max_examples=300, deadline=None)
@given(export_histories())
def test_build_sources_names_exactly_the_exports_each_plan_is_built_from(exports):
    """The ledger compares these sets: they must agree with what a load records, table by table."""
    sources = build_sources(exports)
    for day in DAYS:
        plan = plan_day(exports, day)
        for table in EventTable:
            assert sources.days.get((table, day), frozenset()) == frozenset(plan.tables[table].touched_by)
    for table, plan in plan_definitions(exports).items():
        assert sources.definitions.get(table, frozenset()) == frozenset(plan.touched_by)
    assert {day for _, day in sources.days} <= set(DAYS)
