"""Tolerant answer parsing: what models really send back, and garbage that must be recorded, not crash."""

import re

import pytest

from harness.core.parsing import MAX_ANSWER_CHARS, ParseResult, SchemaError, check_schema, parse_answer, validate

EVANS = {
    "type": "object",
    "properties": {
        "evans_ratio": {"type": "number", "minimum": 0, "maximum": 1},
        "nph": {"type": "boolean"},
        "confidence": {"type": "string", "enum": ["low", "medium", "high"]},
    },
    "required": ["evans_ratio", "nph"],
}
EVANS_FALLBACKS = {
    "evans_ratio": r"evans\s+(?:ratio|index)\s*(?:is|[:=])?\s*(\d*\.\d+|\d+)",
    "nph": r"\bnph\b\s*(?:[:=]|suspected\s*[:=]?)?\s*(yes|no|true|false)",
}
DX = {
    "type": "object",
    "properties": {
        "diagnosis": {"type": "string", "enum": ["glioblastoma", "meningioma", "metastasis", "low-grade glioma"]},
        "findings": {"type": "array", "items": {"type": "string"}, "maxItems": 10},
        "slice": {"type": "integer", "minimum": 0},
    },
    "required": ["diagnosis"],
}


def ok(result: ParseResult, method: str) -> dict:
    assert result.ok, result.error
    assert result.method == method
    assert result.error is None
    return result.value


def test_plain_json():
    v = ok(parse_answer('{"evans_ratio": 0.31, "nph": true}', EVANS), "json")
    assert v == {"evans_ratio": 0.31, "nph": True}


def test_fenced_json_in_prose_takes_the_last_valid_block():
    text = (
        "Let me think. A template would be:\n```json\n{\"evans_ratio\": \"<number>\", \"nph\": false}\n```\n"
        "Measuring the frontal horns gives 38 mm over 121 mm.\n```json\n{\"evans_ratio\": 0.314, \"nph\": true}\n```"
    )
    assert ok(parse_answer(text, EVANS), "fenced-json") == {"evans_ratio": 0.314, "nph": True}


def test_json_embedded_in_prose_with_braces_inside_strings():
    text = 'Sure! Here is my answer: {"diagnosis": "Meningioma", "findings": ["dural tail {sic}", "extra-axial"]} Hope it helps.'
    v = ok(parse_answer(text, DX), "embedded-json")
    assert v["diagnosis"] == "meningioma"  # enum matched case-insensitively, canonical value returned
    assert v["findings"] == ["dural tail {sic}", "extra-axial"]


def test_repairs_trailing_commas_single_quotes_and_python_literals():
    assert ok(parse_answer('{"evans_ratio": 0.28, "nph": false,}', EVANS), "repaired-json")["nph"] is False
    v = ok(parse_answer("Answer: {'evans_ratio': 0.33, 'nph': True, 'confidence': 'High'}", EVANS), "repaired-json")
    assert v == {"evans_ratio": 0.33, "nph": True, "confidence": "high"}
    v = ok(parse_answer("{\u201cevans_ratio\u201d: 0.3, \u201cnph\u201d: null, }", {**EVANS, "required": ["evans_ratio"]}),
           "repaired-json")
    assert v["evans_ratio"] == 0.3


def test_conservative_coercions():
    v = ok(parse_answer('{"evans_ratio": "0.31", "nph": "Yes"}', EVANS), "json")
    assert v == {"evans_ratio": 0.31, "nph": True}
    assert ok(parse_answer('{"diagnosis": "low grade glioma", "slice": 42.0}', DX), "json") == {
        "diagnosis": "low-grade glioma", "slice": 42}
    bad = parse_answer('{"diagnosis": "metastasis", "slice": 42.5}', DX)
    assert not bad.ok and "expected integer" in bad.error
    assert not parse_answer('{"evans_ratio": "about a third", "nph": true}', EVANS).ok


def test_wrapper_object_is_unwrapped():
    v = ok(parse_answer('{"answer": {"evans_ratio": 0.27, "nph": false}}', EVANS), "json+unwrapped")
    assert v["evans_ratio"] == 0.27


def test_plain_text_fallback_with_caller_regexes():
    text = "After measuring, the Evans ratio: 0.31. NPH: yes, given the enlarged frontal horns."
    v = ok(parse_answer(text, EVANS, fallbacks=EVANS_FALLBACKS), "regex")
    assert v == {"evans_ratio": 0.31, "nph": True}
    partial = parse_answer("The Evans index is 0.25.", EVANS, fallbacks=EVANS_FALLBACKS)
    assert not partial.ok and "missing required field(s) ['nph']" in partial.error


def test_invalid_values_are_unparsable_with_the_reason():
    r = parse_answer('{"evans_ratio": 3.1, "nph": true}', EVANS)
    assert (r.ok, r.value, r.method) == (False, None, "unparsable")
    assert "above the maximum 1" in r.error
    r = parse_answer('{"diagnosis": "lymphoma"}', DX)
    assert "not one of" in r.error
    r = parse_answer('{"nph": true}', EVANS)
    assert "missing required field(s) ['evans_ratio']" in r.error
    r = parse_answer('{"evans_ratio": null, "nph": true}', EVANS)
    assert "missing required field(s) ['evans_ratio']" in r.error


@pytest.mark.parametrize(
    "garbage, words",
    [
        (None, "empty answer"),
        ("", "empty answer"),
        ("   \n\t ", "empty answer"),
        ("I cannot help with medical images.", "no JSON object"),
        (b"\xff\xfe\x00garbage\x80{\x81", "no JSON object"),
        ("{" * 5000 + "}" * 5000, "JSON"),
        ("[" * 100000, "invalid JSON"),
        ('{"evans_ratio": ' * 3000, "invalid JSON"),
        ("{} {} {} {" + '"a": {"b": [1, 2, {"c": null}]}' + "}", "missing required"),
        ("x" * (MAX_ANSWER_CHARS + 1), "cap"),
        ("ÿ\u202e\u0000{'evans_ratio': 1e999, 'nph': True}", "expected number"),
    ],
    ids=["none", "empty", "blank", "refusal", "bytes", "deep-braces", "deep-brackets", "unclosed", "junk-objects",
         "huge", "infinite-number"],
)
def test_garbage_is_recorded_as_unparsable_never_raises(garbage, words):
    r = parse_answer(garbage, EVANS, fallbacks=EVANS_FALLBACKS if words == "no JSON object" else None)
    assert not r.ok and r.value is None and r.method == "unparsable"
    assert words in r.error


def test_many_braces_are_bounded():
    # 200,000 characters of alternating braces stays fast (candidate count is capped)
    r = parse_answer("{}" * 45000 + '{"evans_ratio": 0.3, "nph": false}', EVANS)
    assert r.ok and r.method == "embedded-json" and r.value["evans_ratio"] == 0.3


def test_bad_schemas_are_the_task_authors_error():
    with pytest.raises(SchemaError, match="unsupported schema keyword"):
        parse_answer("{}", {"type": "object", "patternProperties": {}})
    with pytest.raises(SchemaError, match="unknown type"):
        parse_answer("{}", {"type": "float"})
    with pytest.raises(SchemaError, match="required field 'x'"):
        parse_answer("{}", {"type": "object", "properties": {}, "required": ["x"]})
    with pytest.raises(SchemaError, match="unknown field"):
        parse_answer("{}", EVANS, fallbacks={"ratio": r"(\d+)"})


def test_validate_reports_nested_paths_and_additional_properties():
    schema = {"type": "object", "properties": {"a": {"type": "array", "items": {"type": "integer", "maximum": 3}}},
              "additionalProperties": False}
    value, err = validate({"a": [1, 2, 9]}, schema)
    assert err == "answer.a[2]: 9 is above the maximum 3"
    value, err = validate({"a": [1], "extra": "dropped"}, schema)
    assert err is None and value == {"a": [1]}
    assert ParseResult(True, {"a": 1}, None, "json").to_dict() == {"ok": True, "value": {"a": 1}, "error": None,
                                                                      "method": "json"}


# ------------------------------------------------------------------------------------ schema keywords, one by one
# Each keyword the module docstring lists: a value on the boundary is accepted, one past it is refused with a
# message naming the field and the bound (that message is what the run records as the reason).

def check(value, schema):
    """validate() on one field: returns (coerced value, error)."""
    return validate({"x": value}, {"type": "object", "properties": {"x": schema}, "required": ["x"]})


@pytest.mark.parametrize(
    "schema, good, bad, message",
    [
        ({"type": "integer", "minimum": 0}, 0, -1, "answer.x: -1 is below the minimum 0"),
        ({"type": "number", "maximum": 1}, 1, 1.01, "answer.x: 1.01 is above the maximum 1"),
        ({"type": "number", "exclusiveMinimum": 0}, 0.001, 0, "answer.x: 0 is not above 0"),
        ({"type": "number", "exclusiveMaximum": 1}, 0.999, 1, "answer.x: 1 is not below 1"),
        ({"type": "string", "minLength": 3}, "abc", "ab", "answer.x: text shorter than 3 characters"),
        ({"type": "string", "maxLength": 3}, "abc", "abcd", "answer.x: text longer than 3 characters"),
        ({"type": "array", "minItems": 2}, [1, 2], [1], "answer.x: fewer than 2 items"),
        ({"type": "array", "maxItems": 2}, [1, 2], [1, 2, 3], "answer.x: more than 2 items"),
    ],
    ids=["minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum", "minLength", "maxLength", "minItems",
         "maxItems"],
)
def test_each_bound_accepts_its_boundary_and_refuses_past_it(schema, good, bad, message):
    assert check(good, schema) == ({"x": good}, None)
    assert check(bad, schema)[1] == message


def test_without_length_or_count_bounds_empty_text_and_empty_lists_are_valid():
    assert check("", {"type": "string"}) == ({"x": ""}, None)
    assert check([], {"type": "array", "items": {"type": "string"}}) == ({"x": []}, None)


def test_bounds_reach_the_answer_through_parse_answer():
    schema = {"type": "object", "properties": {"volume_ml": {"type": "number", "exclusiveMinimum": 0},
                                               "impression": {"type": "string", "minLength": 1, "maxLength": 20}},
              "required": ["volume_ml", "impression"]}
    r = parse_answer('{"volume_ml": 0, "impression": "no bleed"}', schema)
    assert r.error == "json: answer.volume_ml: 0 is not above 0"
    r = parse_answer('{"volume_ml": 12.5, "impression": ""}', schema)
    assert r.error == "json: answer.impression: text shorter than 1 characters"
    r = parse_answer('{"volume_ml": 12.5, "impression": "acute subdural haematoma"}', schema)
    assert r.error == "json: answer.impression: text longer than 20 characters"
    assert ok(parse_answer('{"volume_ml": "12.5", "impression": "acute SDH"}', schema), "json") == {
        "volume_ml": 12.5, "impression": "acute SDH"}


@pytest.mark.parametrize(
    "value, schema, message",
    [
        ("about a third", {"type": "number"}, "answer.x: expected number, got 'about a third'"),
        (True, {"type": "number"}, "answer.x: expected number, got True"),
        ([0.3], {"type": "number"}, "answer.x: expected number, got [0.3]"),
        (1, {"type": "boolean"}, "answer.x: expected boolean, got 1"),
        ("maybe", {"type": "boolean"}, "answer.x: expected boolean, got 'maybe'"),
        (5, {"type": "string"}, "answer.x: expected string, got 5"),
        ("mass", {"type": "array"}, "answer.x: expected array, got 'mass'"),
        ([1], {"type": "object"}, "answer.x: expected object, got [1]"),
        (0, {"type": "null"}, "answer.x: expected null, got 0"),
        (7, {"enum": [1, 2, 3, 4]}, "answer.x: 7 is not one of [1, 2, 3, 4]"),
        ("lymphoma", {"type": "string", "enum": ["glioma", "meningioma"]},
         "answer.x: 'lymphoma' is not one of ['glioma', 'meningioma']"),
    ],
    ids=["prose-for-number", "bool-for-number", "list-for-number", "int-for-boolean", "maybe-for-boolean",
         "number-for-string", "string-for-array", "list-for-object", "zero-for-null", "int-enum", "string-enum"],
)
def test_wrong_types_are_refused_with_the_value_shown(value, schema, message):
    assert check(value, schema)[1] == message


def test_long_values_are_shortened_in_the_message():
    v, err = check("x" * 58, {"type": "number"})  # repr is 60 characters: shown whole
    assert err == "answer.x: expected number, got '" + "x" * 58 + "'"
    v, err = check("z" * 59, {"type": "number"})  # repr is 61 characters: shortened
    assert err == "answer.x: expected number, got '" + "z" * 56 + "..."
    v, err = check("y" * 100, {"type": "number"})
    assert err == "answer.x: expected number, got '" + "y" * 56 + "..."


@pytest.mark.parametrize(
    "value, expected",
    [("Yes.", True), ("no", False), ("No.", False), ("FALSE", False), ("0", False), ("1", True)],
)
def test_boolean_words_with_a_final_period(value, expected):
    assert check(value, {"type": "boolean"}) == ({"x": expected}, None)


@pytest.mark.parametrize("value, expected", [("0.31.", 0.31), (".5", 0.5), (" 42. ", 42.0), ("-1e-2", -0.01)])
def test_numeric_strings_as_models_write_them(value, expected):
    assert check(value, {"type": "number"}) == ({"x": expected}, None)


def test_validate_never_passes_a_type_it_does_not_know():
    assert validate(1.5, {"type": "float"})[1] == "answer: expected float, got 1.5"


def test_nullable_fields_required_or_not():
    schema = {"type": "object",
              "properties": {"ratio": {"type": ["number", "null"], "minimum": 0, "maximum": 1},
                             "flag": {"type": "null"},
                             "note": {"type": "string"},
                             "size": {"description": "no type given"}},
              "required": ["ratio", "flag"]}
    # "not measurable" answered as null: a required field whose type allows null keeps it (bounds don't apply)
    assert validate({"ratio": None, "flag": None}, schema) == ({"ratio": None, "flag": None}, None)
    assert validate({"ratio": 0.4, "flag": None}, schema) == ({"ratio": 0.4, "flag": None}, None)
    # a required field without null in its type, given null, is missing
    required_size = {**schema, "required": ["ratio", "size"]}
    assert validate({"ratio": 0.4, "size": None}, required_size)[1] == "answer: missing required field(s) ['size']"


def test_optional_null_fields_are_dropped_and_the_rest_kept():
    v = ok(parse_answer('{"confidence": null, "evans_ratio": 0.3, "nph": true}', EVANS), "json")
    assert v == {"evans_ratio": 0.3, "nph": True}
    no_required = {"type": "object", "properties": {"a": {"type": "number"}, "b": {"type": "number"}}}
    assert validate({"a": None, "b": 2}, no_required) == ({"b": 2}, None)


def test_extra_fields_are_kept_unless_additional_properties_is_false():
    v = ok(parse_answer('{"evans_ratio": 0.3, "nph": true, "comment": "mild"}', EVANS), "json")
    assert v == {"evans_ratio": 0.3, "nph": True, "comment": "mild"}
    strict = {**EVANS, "additionalProperties": False}
    assert ok(parse_answer('{"evans_ratio": 0.3, "nph": true, "comment": "mild"}', strict), "json") == {
        "evans_ratio": 0.3, "nph": True}


# ------------------------------------------------------------------------------------------ schema checking

def test_schema_errors_name_the_place_in_the_schema():
    with pytest.raises(SchemaError, match=r"^schema: unsupported schema keyword\(s\) \['pattern'\]"):
        check_schema({"type": "string", "pattern": "x"})
    with pytest.raises(SchemaError, match=r"^schema\.findings: unsupported schema keyword\(s\) \['uniqueItems'\]"):
        check_schema({"type": "object", "properties": {"findings": {"type": "array", "uniqueItems": True}}})
    with pytest.raises(SchemaError, match=r"^schema\.findings\[\]: unknown type 'str'"):
        parse_answer("{}", {"type": "object", "properties": {"findings": {"type": "array", "items": {"type": "str"}}}})
    with pytest.raises(SchemaError, match=r"^schema\.grade: must be a mapping, got str"):
        check_schema({"type": "object", "properties": {"grade": "integer"}})
    with pytest.raises(SchemaError, match=r"^schema: must be a mapping, got list"):
        check_schema([{"type": "object"}])


def test_type_lists_are_checked_member_by_member():
    check_schema({"type": ["number", "null"]})  # a valid list of types
    with pytest.raises(SchemaError, match="unknown type 'float'"):
        check_schema({"type": ["number", "float"]})


# ------------------------------------------------------------------------------------- finding the JSON in text

def test_fence_languages_read_as_json():
    body = '{"evans_ratio": 0.3, "nph": false}'
    for lang in ("", "JSON", "json5", "javascript"):
        text = f"My answer:\n```{lang}\n{body}\n```\nDone."
        assert ok(parse_answer(text, EVANS), "fenced-json")["evans_ratio"] == 0.3, lang


def test_braces_and_escaped_quotes_inside_strings_do_not_cut_the_object():
    text = 'Answer: {"diagnosis": "metastasis", "findings": ["rim {", "said \\"}\\" twice"]} as requested'
    assert ok(parse_answer(text, DX), "embedded-json")["findings"] == ["rim {", 'said "}" twice']
    text = 'Answer: {"diagnosis": "metastasis", "findings": ["ring {enhancing", "oedema"]} as requested'
    assert ok(parse_answer(text, DX), "embedded-json")["findings"] == ["ring {enhancing", "oedema"]


def test_single_quoted_strings_with_braces_in_a_python_style_answer():
    text = "Final: {'diagnosis': 'metastasis', 'findings': ['rim {', 'edema }}']} as requested"
    assert ok(parse_answer(text, DX), "repaired-json")["findings"] == ["rim {", "edema }}"]


def test_json_quoted_as_a_whole_in_prose():
    text = "The answer is '{\"diagnosis\": \"meningioma\"}' with high confidence."
    assert ok(parse_answer(text, DX), "embedded-json") == {"diagnosis": "meningioma"}


def test_an_unclosed_apostrophe_in_a_draft_object_ends_at_the_line_end():
    text = 'Draft: {diagnosis: mets or \'ring lesion\n}\nFinal: {"diagnosis": "metastasis"}'
    assert ok(parse_answer(text, DX), "embedded-json") == {"diagnosis": "metastasis"}


def test_nested_object_in_prose_and_a_period_right_after_it():
    text = 'Here it is: {"answer": {"evans_ratio": 0.3, "nph": false}}. Thanks.'
    assert ok(parse_answer(text, EVANS), "embedded-json+unwrapped") == {"evans_ratio": 0.3, "nph": False}


def test_a_stray_closing_brace_before_the_answer():
    text = 'Continuing: 0.3, "nph": true}\nFull answer: {"evans_ratio": 0.3, "nph": true}'
    assert ok(parse_answer(text, EVANS), "embedded-json") == {"evans_ratio": 0.3, "nph": True}


def test_control_characters_are_dropped_before_parsing():
    assert ok(parse_answer('{"evans_ratio": 0.3,\x00\x07 "nph": true}', EVANS), "json") == {
        "evans_ratio": 0.3, "nph": True}


def test_single_quoted_answer_with_json_literals():
    v = ok(parse_answer("{'evans_ratio': 0.3, 'nph': false, 'confidence': null}", EVANS), "repaired-json")
    assert v == {"evans_ratio": 0.3, "nph": False}
    v = ok(parse_answer("{'evans_ratio': 0.3, 'nph': true, 'note': 'true, not null'}", EVANS), "repaired-json")
    assert v == {"evans_ratio": 0.3, "nph": True, "note": "true, not null"}


def test_repaired_wrapper_is_unwrapped():
    v = ok(parse_answer("{'answer': {'evans_ratio': 0.3, 'nph': True}}", EVANS), "repaired-json+unwrapped")
    assert v == {"evans_ratio": 0.3, "nph": True}


# --------------------------------------------------------------------------------------- fallbacks and errors

def test_fallback_without_a_capture_group_takes_the_whole_match_and_precompiled_patterns_work():
    fallbacks = {"diagnosis": r"glioblastoma|meningioma|metastasis", "slice": re.compile(r"slice (\d+)")}
    v = ok(parse_answer("Most likely a Meningioma, best seen on slice 42.", DX, fallbacks=fallbacks), "regex")
    assert v == {"diagnosis": "meningioma", "slice": 42}


def test_the_reported_error_is_the_most_telling_one():
    # parsed but invalid beats a syntax error elsewhere, and names the route that parsed it
    r = parse_answer('{"evans_ratio": 3.1, "nph": true}', EVANS)
    assert r.error == "json: answer.evans_ratio: 3.1 is above the maximum 1"
    r = parse_answer('Draft {"evans_ratio": 0.3 "nph"} final {"evans_ratio": 3.1, "nph": true}', EVANS)
    assert r.error == "embedded-json: answer.evans_ratio: 3.1 is above the maximum 1"
    r = parse_answer('{"evans_ratio": 0.3 "nph": true}', EVANS)
    assert r.error.startswith("json: invalid JSON (Expecting ',' delimiter")


def test_unparsable_results_are_exact():
    unparsable = lambda error: ParseResult(False, None, error, "unparsable")  # noqa: E731
    assert parse_answer(None, EVANS) == unparsable("empty answer")
    assert parse_answer(" \x00 ", EVANS) == unparsable("empty answer")
    assert parse_answer(42, EVANS) == unparsable("answer is int, not text")
    assert parse_answer("x" * 11, EVANS, max_chars=10) == unparsable(
        "answer is 11 characters, over the 10-character cap")
    assert parse_answer("I cannot answer.", EVANS) == unparsable("no JSON object found in the answer")
    assert parse_answer("I cannot answer.", EVANS, fallbacks=EVANS_FALLBACKS) == unparsable(
        "no JSON object and no fallback pattern matched")
