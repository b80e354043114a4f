"""Unit tests for the collection's filters: to_toml, portfolio_drift."""

from __future__ import annotations

import datetime
import math
import tomllib

import pytest
from ansible.errors import AnsibleFilterError
from ansible_collections.mojorust.dr.plugins.filter import portfolio_drift as drift_plugin
from ansible_collections.mojorust.dr.plugins.filter import to_toml as toml_plugin
from hypothesis import given, settings
from hypothesis import strategies as st

to_toml = toml_plugin.to_toml
portfolio_drift = drift_plugin.portfolio_drift


def test_filter_modules_register_their_filters():
    assert toml_plugin.FilterModule().filters() == {"to_toml": to_toml}
    assert drift_plugin.FilterModule().filters() == {"portfolio_drift": portfolio_drift}


# --------------------------------------------------------------------------------------------------- to_toml
TRADING = {
    "bot": {"name": "mojorust", "mode": "paper", "trade_interval_seconds": 1.0, "dry_run": False},
    "database": {"host": "localhost", "port": 5432},
    "apis": {"endpoints": ["http://edge:8080/helius", "http://edge:8080/jupiter"]},
    "risk": {"max_open_positions": 3, "limits": {"daily_loss": 0.05, "per_trade": 1e-3}},
    "strategies": [{"name": "momentum", "weight": 0.6}, {"name": "mean revert", "weight": 0.4}],
    "version": 3,
}


def test_to_toml_round_trips_a_configuration():
    text = to_toml(TRADING)
    assert text.endswith("\n")
    assert tomllib.loads(text) == TRADING


def test_to_toml_layout_scalars_first_then_tables():
    text = to_toml({"bot": {"name": "x", "sub": {"a": 1}}, "top": True})
    assert text == 'top = true\n\n[bot]\nname = "x"\n\n[bot.sub]\na = 1\n'


@pytest.mark.parametrize(
    "value",
    [
        'quote " inside',
        "back\\slash",
        "new\nline",
        "tab\tand\rreturn",
        "\x00\x01\x1f control",
        "unicode é ✓ 日本",
        "'single'",
        '"""triple"""',
        "#not a comment",
        "",
    ],
)
def test_to_toml_escapes_strings(value):
    data = {"plain": value, "needs quoting": {"a.b": value, "list": [value]}}
    assert tomllib.loads(to_toml(data)) == data


@pytest.mark.parametrize("key", ["a.b", "with space", "", "é", 'quote"key', "x=y", "[t]"])
def test_to_toml_quotes_keys_and_table_names(key):
    data = {key: 1, "t": {key: {key: "deep"}}}
    assert tomllib.loads(to_toml(data)) == data


@pytest.mark.parametrize("value", [0.1, -0.0, 1e300, 5e-324, 1e16, 123456789.125, -2.5, 1.7976931348623157e308, 3.0])
def test_to_toml_floats_exact(value):
    parsed = tomllib.loads(to_toml({"f": value}))["f"]
    assert isinstance(parsed, float)
    assert parsed == value
    assert math.copysign(1, parsed) == math.copysign(1, value)


def test_to_toml_bools_ints_dates_and_empties():
    data = {
        "yes": True,
        "no": False,
        "big": 2**63 - 1,
        "neg": -17,
        "day": datetime.date(2026, 11, 25),
        "at": datetime.datetime(2026, 11, 25, 2, 0, 0),
        "at_utc": datetime.datetime(2026, 11, 25, 2, 0, 0, 500, tzinfo=datetime.UTC),
        "empty_list": [],
        "empty_inline": [{}],
        "empty_table": {},
    }
    parsed = tomllib.loads(to_toml(data))
    assert parsed == data
    assert parsed["yes"] is True and type(parsed["big"]) is int
    assert to_toml({"t": (1, 2)}) == "t = [1, 2]\n"


def test_to_toml_empty_mapping_is_an_empty_document():
    assert tomllib.loads(to_toml({})) == {}


@pytest.mark.parametrize(
    ("data", "where"),
    [
        ({"mode": None}, "mode"),
        ({"bot": {"mode": None}}, "bot.mode"),
        ({"bot": {"limits": [1, None]}}, "bot.limits[1]"),
        ({"bot": {"strategies": [{"weight": None}]}}, "bot.strategies[0].weight"),
        ({"ratio": math.nan}, "ratio"),
        ({"risk": {"ratio": math.inf}}, "risk.ratio"),
        ({"risk": {"ratio": -math.inf}}, "risk.ratio"),
        ({"risk": {"obj": object()}}, "risk.obj"),
    ],
)
def test_to_toml_refuses_what_toml_cannot_hold_naming_the_key(data, where):
    with pytest.raises(AnsibleFilterError) as caught:
        to_toml(data)
    message = str(caught.value)
    assert message.startswith("to_toml: ")
    assert f" {where} " in message


def test_to_toml_refuses_non_mapping_and_non_string_keys():
    with pytest.raises(AnsibleFilterError, match="expects a mapping, got list"):
        to_toml([1, 2])
    with pytest.raises(AnsibleFilterError, match="key 1 at top level is not a string"):
        to_toml({1: "x"})
    with pytest.raises(AnsibleFilterError, match="key 2 at bot is not a string"):
        to_toml({"bot": {2: "x"}})


# Any text TOML can hold (surrogates cannot be encoded at all), in values and in keys.
TEXT = st.text(st.characters(exclude_categories=["Cs"]), max_size=12)
KEYS = st.text(st.characters(exclude_categories=["Cs"]), max_size=8)
SCALARS = (
    st.booleans()
    | st.integers(min_value=-(2**63), max_value=2**63 - 1)
    | st.floats(allow_nan=False, allow_infinity=False)
    | TEXT
    | st.dates()
    | st.datetimes()
)
VALUES = st.recursive(
    SCALARS,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(KEYS, inner, max_size=4),
    max_leaves=12,
)
DOCUMENTS = st.recursive(
    st.dictionaries(KEYS, VALUES, max_size=5),
    lambda tables: st.dictionaries(KEYS, tables | VALUES, max_size=4),
    max_leaves=8,
)


@settings(max_examples=200, deadline=None)
@given(DOCUMENTS)
def test_to_toml_round_trip_property(document):
    assert tomllib.loads(to_toml(document)) == document


def test_to_toml_escapes_delete_character():
    data = {"token": "a\x7fb"}
    assert tomllib.loads(to_toml(data)) == data


def test_to_toml_quotes_keys_beyond_the_bmp():
    data = {"\U0001f680 rocket": 1, "t": {"\U0001f680": {"x": 2}}}
    assert tomllib.loads(to_toml(data)) == data


@pytest.mark.parametrize("value", [1, {"a": 1}])
def test_to_toml_quotes_a_key_ending_with_a_newline(value):
    data = {"port\n": value}
    assert tomllib.loads(to_toml(data)) == data


# ------------------------------------------------------------------------------------------- portfolio_drift
def test_portfolio_drift_documented_example():
    assert portfolio_drift({"bot": 10100, "state file": 10000}, 10000, 0.005) == [
        "bot differs from the reference by 1.00% (10100.0 vs 10000.0)"
    ]


def test_portfolio_drift_tolerance_is_inclusive_and_defaults_to_one_percent():
    assert portfolio_drift({"bot": 10100}, 10000) == []  # exactly 1%: not reported
    assert portfolio_drift({"bot": 10101}, 10000) == ["bot differs from the reference by 1.01% (10101.0 vs 10000.0)"]
    assert portfolio_drift({"low": 9899}, "10000", "0.01") == [
        "low differs from the reference by 1.01% (9899.0 vs 10000.0)"
    ]


def test_portfolio_drift_skips_missing_and_reads_numeric_strings():
    values = {"none": None, "empty": "", "string": "10500.5", "same": "10000"}
    assert portfolio_drift(values, 10000.0, 0.01) == ["string differs from the reference by 5.00% (10500.5 vs 10000.0)"]


def test_portfolio_drift_zero_reference():
    assert portfolio_drift({"a": 0, "b": 0.0}, 0) == []
    assert portfolio_drift({"a": 5}, 0) == ["a differs from the reference by inf% (5.0 vs 0.0)"]


def test_portfolio_drift_negative_reference_uses_its_magnitude():
    assert portfolio_drift({"a": -110}, -100, 0.05) == ["a differs from the reference by 10.00% (-110.0 vs -100.0)"]
    assert portfolio_drift({"a": -101}, -100, 0.05) == []


def test_portfolio_drift_keeps_the_order_of_the_values():
    result = portfolio_drift({"z": 1, "a": 2, "m": 100}, 100, 0.0)
    assert [line.split(" ", 1)[0] for line in result] == ["z", "a"]


# ------------------------------------------------------------------------------------------- moment_set_id
@pytest.mark.parametrize(
    ("text", "set_id"),
    [
        ("2026-11-26 01:02:03+00:00", "20261126T010203Z"),
        ("2026-11-26T02:02:03+01:00", "20261126T010203Z"),
        ("2026-11-26 01:02:03", "20261126T010203Z"),
    ],
)
def test_a_moment_becomes_the_set_id_of_that_utc_time(text, set_id):
    from ansible_collections.mojorust.dr.plugins.filter.moment import moment_set_id

    assert moment_set_id(text) == set_id


def test_a_date_alone_is_no_breach_time():
    from ansible.errors import AnsibleFilterError
    from ansible_collections.mojorust.dr.plugins.filter.moment import moment_set_id

    with pytest.raises(AnsibleFilterError, match="breach_time '2026-11-26' has no time of day"):
        moment_set_id("2026-11-26")


def test_inventory_home_is_the_inventory_dir_or_the_directory_of_the_source_file(tmp_path):
    from ansible_collections.mojorust.dr.plugins.filter.inventory_home import inventory_home

    source = tmp_path / "ansible_inventory.yml"
    source.write_text("all: {}\n")
    assert inventory_home("/srv/inventories/production", [str(source)]) == "/srv/inventories/production"
    # a host added at run time, the implicit localhost: the -i file's directory, never the file itself
    assert inventory_home(None, [str(source)]) == str(tmp_path)
    assert inventory_home("", [str(tmp_path)]) == str(tmp_path)
