"""Tolerant answer parsing: what models really send back, and garbage that must be recorded, not crash."""

import pytest

from harness.core.parsing import MAX_ANSWER_CHARS, ParseResult, SchemaError, parse_answer, validate

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
