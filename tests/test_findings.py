"""Head-CT findings labeler on hand-written report sentences (negations, hedges, spellings) and finding-level F1."""

import json
import math
import re

import pytest

from harness.scoring import findings
from harness.scoring.findings import (
    ABSENT,
    NOT_MENTIONED,
    PRESENT,
    UNCERTAIN,
    ReportFindings,
    compare_findings,
    finding_labels,
    label_report,
    score_findings,
    split_sentences,
)



@pytest.fixture(scope="module", autouse=True)
def _lexicon_built_by_the_code_under_test():
    """The labeler compiles findings_lexicon.json once per process (lru_cache). Clear it so these tests run on
    regexes built by the current _compile, not on ones cached earlier in the process (another test module, or a
    runner that forks after a first run, as mutmut does)."""
    findings._lexicon.cache_clear()
    yield
    findings._lexicon.cache_clear()


SHORT = {
    "ich": "intracranial_haemorrhage", "iph": "intraparenchymal_haemorrhage", "sdh": "subdural_haemorrhage",
    "edh": "epidural_haemorrhage", "sah": "subarachnoid_haemorrhage", "ivh": "intraventricular_haemorrhage",
    "mls": "midline_shift", "me": "mass_effect", "hc": "hydrocephalus", "inf": "infarct", "ainf": "acute_infarct",
    "cinf": "chronic_infarct", "skfx": "skull_fracture", "sinus": "sinus_disease", "orbit": "orbital_abnormality",
    "scalp": "scalp_soft_tissue", "facefx": "facial_fracture",
}
P, A, U = PRESENT, ABSENT, UNCERTAIN
NO_BLEED = {"ich": A, "iph": A, "sdh": A, "edh": A, "sah": A, "ivh": A}
NO_ACUTE_INTRACRANIAL = {**NO_BLEED, "mls": A, "me": A, "hc": A, "ainf": A}

# (sentence, every label that is not "not_mentioned")
CASES = [
    # haemorrhage: generic negation covers the subtypes; spellings and abbreviations
    ("No acute intracranial haemorrhage.", NO_BLEED),
    ("No acute intracranial hemorrhage.", NO_BLEED),
    ("No intracranial bleed.", NO_BLEED),
    ("No acute intracranial hemorrhage, mass effect or midline shift.", {**NO_BLEED, "mls": A, "me": A}),
    ("There is no evidence of acute intracranial haemorrhage, territorial infarct, extra-axial collection, mass "
     "effect or midline shift.", {**NO_BLEED, "mls": A, "me": A, "inf": A, "ainf": A, "cinf": A}),
    ("No evidence of subarachnoid haemorrhage.", {"sah": A}),
    ("No SAH.", {"sah": A}),
    ("No extra-axial collection.", {"sdh": A, "edh": A}),
    ("No intraventricular extension.", {"ivh": A}),
    ("Acute right SDH measuring 8 mm with 5 mm leftward midline shift.", {"ich": P, "sdh": P, "mls": P}),
    ("Small right parietal subdural haematoma measuring 4 mm in thickness, without significant mass effect.",
     {"ich": P, "sdh": P, "me": A}),
    ("Acute subarachnoid haemorrhage in the basal cisterns and Sylvian fissures, with early hydrocephalus.",
     {"ich": P, "sah": P, "hc": P}),
    ("Left convexity extradural haematoma.", {"ich": P, "edh": P}),
    ("Biconvex EDH in the right temporal region.", {"ich": P, "edh": P}),
    ("Intraparenchymal haematoma in the right basal ganglia with intraventricular extension.",
     {"ich": P, "iph": P, "ivh": P}),
    ("Left thalamic haemorrhage.", {"ich": P, "iph": P}),
    ("Left frontal contusion without midline shift.", {"ich": P, "iph": P, "mls": A}),
    ("Blood in the fourth ventricle.", {"ich": P, "ivh": P}),
    ("Extra-axial haematoma over the left convexity.", {"ich": P}),
    ("SDH is present, hydrocephalus is not seen.", {"ich": P, "sdh": P, "hc": A}),
    ("No interval change in the left subdural haematoma.", {"ich": P, "sdh": P}),
    ("Stable appearance of the right subdural collection, no new haemorrhage.",
     {"ich": P, "sdh": P, "iph": A, "edh": A, "sah": A, "ivh": A}),
    # hedges
    ("Possible small right subdural haematoma.", {"ich": U, "sdh": U}),
    ("A small subdural haematoma cannot be excluded.", {"ich": U, "sdh": U}),
    ("Epidural haematoma cannot be ruled out.", {"ich": U, "edh": U}),
    ("Probable chronic subdural haematoma on the left.", {"ich": U, "sdh": U}),
    ("?SAH", {"ich": U, "sah": U}),
    ("Evaluate for SAH.", {"ich": U, "sah": U}),
    ("SDH versus hygroma over the right convexity.", {"ich": U, "sdh": U}),
    ("Hypodensity in the left MCA territory may represent an acute infarct.", {"inf": U, "ainf": U}),
    ("Subtle hypodensity in the left frontal lobe, which could represent an evolving infarct.", {"inf": U, "ainf": U}),
    ("Findings may represent early ischaemic change; MRI is recommended.", {"inf": U, "ainf": U}),
    ("No definite intracranial haemorrhage, though a small subdural haematoma cannot be excluded.",
     {"ich": U, "sdh": U, "iph": A, "edh": A, "sah": A, "ivh": A}),
    ("Findings are suspicious for a small subarachnoid haemorrhage.", {"ich": U, "sah": U}),
    # midline, mass effect, hydrocephalus
    ("There is a 3.5 mm rightward midline shift. Effacement of the left lateral ventricle.", {"mls": P, "me": P}),
    ("Midline structures are central.", {"mls": A}),
    ("The basal cisterns are effaced.", {"me": P}),
    ("The basal cisterns are not effaced.", {"me": A}),
    ("Basal cisterns are patent.", {"me": A}),
    ("Effacement of the right lateral ventricle.", {"me": P}),
    ("No hydrocephalus.", {"hc": A}),
    ("The ventricles are normal in size.", {"hc": A}),
    ("The ventricles are not dilated.", {"hc": A}),
    ("Ventricles and sulci are normal in size and configuration for age.", {"hc": A}),
    ("No midline shift or hydrocephalus is present.", {"mls": A, "hc": A}),
    ("The ventricles are dilated out of proportion to the sulci, consistent with hydrocephalus.", {"hc": P}),
    ("The ventricles are enlarged, in keeping with atrophy.", {"hc": A}),
    ("Hydrocephalus with transependymal oedema.", {"hc": P}),
    ("Normal pressure hydrocephalus.", {"hc": P}),
    # infarcts: acuity
    ("Old lacunar infarct in the left basal ganglia. No acute infarct.", {"inf": P, "cinf": P, "ainf": A}),
    ("Old right occipital infarct with encephalomalacia.", {"inf": P, "cinf": P}),
    ("Non-haemorrhagic infarct in the right MCA territory.", {"inf": P}),
    ("Loss of grey-white matter differentiation in the right insula.", {"inf": P, "ainf": P}),
    ("Grey-white matter differentiation is preserved.", {"ainf": A}),
    ("No loss of grey-white matter differentiation.", {"ainf": A}),
    ("Hyperdense left MCA sign.", {"inf": P, "ainf": P}),
    ("Chronic small vessel ischaemic changes.", {}),
    ("Mild generalised cerebral volume loss.", {}),
    # skull and face
    ("No skull fracture. Nasal bone fracture.", {"skfx": A, "facefx": P}),
    ("Depressed fracture of the right frontal bone with underlying contusion.", {"skfx": P, "ich": P, "iph": P}),
    ("The calvarium is intact.", {"skfx": A}),
    ("No skull vault fracture. The facial bones are unremarkable.", {"skfx": A, "facefx": A}),
    ("Fracture of the left orbital floor.", {"facefx": P}),
    ("Bilateral nasal bone fractures.", {"facefx": P}),
    ("No fracture.", {"skfx": A, "facefx": A}),
    ("Negative for acute fracture.", {"skfx": A, "facefx": A}),
    ("No fracture is seen; there is a large left parietal scalp haematoma.", {"skfx": A, "facefx": A, "scalp": P}),
    # extracranial
    ("The paranasal sinuses and mastoid air cells are clear.", {"sinus": A}),
    ("The visualised paranasal sinuses are well aerated.", {"sinus": A}),
    ("Mucosal thickening in the left maxillary sinus.", {"sinus": P}),
    ("Opacification of the right maxillary sinus with an air-fluid level, in keeping with acute sinusitis.",
     {"sinus": P}),
    ("Mastoid air cells are clear.", {}),
    ("The orbits are unremarkable.", {"orbit": A}),
    ("Right proptosis with retrobulbar haematoma.", {"orbit": P}),
    ("Large left frontal scalp haematoma.", {"scalp": P}),
    ("Soft tissue swelling over the left frontal region.", {"scalp": P}),
    ("The extracranial soft tissues are unremarkable.", {"scalp": A}),
    ("Scalp: no haematoma.", {"scalp": A}),
    ("Sinuses: clear. Skull: intact. Hydrocephalus: none.", {"sinus": A, "skfx": A, "hc": A}),
    ("Unremarkable orbits.", {"orbit": A}),
    ("There is a subgaleal haematoma.", {"scalp": P}),
    ("Without evidence of skull fracture or scalp swelling.", {"skfx": A, "scalp": A}),
    ("Possible left orbital floor fracture.", {"facefx": U}),
    ("A fracture of the right zygomatic arch is noted.", {"facefx": P}),
    ("Comminuted fracture of the occipital bone extending to the foramen magnum.", {"skfx": P}),
    ("The left globe is ruptured.", {"orbit": P}),
    ("Mild mucosal thickening of the ethmoid air cells.", {"sinus": P}),
    ("Hypodense collection along the left convexity, likely chronic subdural haematoma.", {"ich": U, "sdh": U}),
    ("Tiny focus of subarachnoid blood in the left sylvian fissure cannot be excluded.", {"ich": U, "sah": U}),
    ("No subdural, epidural or subarachnoid haemorrhage.", {"sdh": A, "edh": A, "sah": A}),
    ("Intracranial haemorrhage is excluded.", NO_BLEED),
    ("There is no acute haemorrhage or infarct.", {**NO_BLEED, "ainf": A}),
    ("No CT evidence of acute infarct.", {"ainf": A}),
    ("Bilateral frontal contusions are seen, with no midline shift.", {"ich": P, "iph": P, "mls": A}),
    ("The brain parenchyma is normal.", {"iph": A, "ainf": A}),
    # global statements
    ("Normal CT head.", NO_ACUTE_INTRACRANIAL),
    ("No acute intracranial abnormality.", NO_ACUTE_INTRACRANIAL),
    ("Impression: no acute intracranial findings.", NO_ACUTE_INTRACRANIAL),
    ("No evidence of raised intracranial pressure.", {}),
    # cue placement and scope
    ("SDH?", {"ich": U, "sdh": U}),  # query mark right after the finding
    ("Hydrocephalus is also not seen.", {"hc": A}),  # auxiliaries between finding and post-negation
    ("Resolved subdural haematoma.", {"sdh": A}),  # words that negate before and after a finding
    ("Ruled out subarachnoid haemorrhage.", {"sah": A}),
    ("Subdural haematoma resolved.", {"sdh": A}),
    ("No acute haemorrhage is seen, chronic subdural haematoma on the left.",
     {"ich": P, "sdh": P, "iph": A, "edh": A, "sah": A, "ivh": A}),  # the verb ends the negation's scope
    # a one-word answer after a colon negates its label, not what follows the comma
    ("Fracture: none, scalp haematoma.", {"skfx": A, "facefx": A, "scalp": P}),
    # a comma before a sized finding ends a negation's list; a bare list stays negated
    ("No fracture, large scalp haematoma.", {"skfx": A, "facefx": A, "scalp": P}),
    ("No fracture, 12 mm scalp haematoma.", {"skfx": A, "facefx": A, "scalp": P}),
    ("No fracture, scalp haematoma or sinus disease.", {"skfx": A, "facefx": A, "scalp": A, "sinus": A}),
    ("Scalp haematoma with underlying skull fracture excluded.", {"scalp": P, "skfx": A}),  # "with" ends post scope
    ("SCALP HAEMATOMA WITH UNDERLYING SKULL FRACTURE EXCLUDED.", {"scalp": P, "skfx": A}),  # all-caps report
    # a post cue reaches 8 words back, not 9
    ("Subdural haematoma over the left frontal convexity near the vertex excluded.", {"sdh": A}),
    ("Subdural haematoma over the left frontal convexity close to the vertex excluded.", {"ich": P, "sdh": P}),
    # spellings the lexicon's mini-language allows
    ("Sub-dural haematoma.", {"ich": P, "sdh": P}),
    ("Intra-cranial haemorrhage.", {"ich": P}),
    ("Intra cranial haemorrhage.", {"ich": P}),
]


@pytest.mark.parametrize("sentence, expected", CASES, ids=[c[0][:60] for c in CASES])
def test_sentence_labels(sentence, expected):
    states = label_report(sentence).states
    got = {k: v for k, v in states.items() if v != NOT_MENTIONED}
    assert got == {SHORT[k]: v for k, v in expected.items()}


def test_full_report_british_and_american_spelling_agree():
    british = """FINDINGS:
    Acute right frontoparietal subdural haematoma measuring 9 mm, with 6 mm leftward midline shift and
    effacement of the right lateral ventricle. No intraventricular haemorrhage. The basal cisterns are patent.
    No hydrocephalus. Grey-white matter differentiation is preserved. Large right parietal scalp haematoma.
    No skull fracture. Mucosal thickening of the left maxillary sinus. The orbits are unremarkable.
    IMPRESSION: Acute right SDH with mass effect and midline shift."""
    american = british.replace("haematoma", "hematoma").replace("haemorrhage", "hemorrhage")
    b, a = label_report(british), label_report(american)
    assert b.states == a.states
    s = b.states
    assert s["subdural_haemorrhage"] == s["intracranial_haemorrhage"] == PRESENT
    assert s["midline_shift"] == s["mass_effect"] == PRESENT  # "cisterns patent" is overridden by explicit mass effect
    assert s["intraventricular_haemorrhage"] == s["hydrocephalus"] == s["acute_infarct"] == ABSENT
    assert s["scalp_soft_tissue"] == s["sinus_disease"] == PRESENT
    assert s["skull_fracture"] == s["orbital_abnormality"] == ABSENT
    assert s["epidural_haemorrhage"] == NOT_MENTIONED
    assert any(m.cue == "No" and m.concept == "intraventricular" for m in b.mentions)


def test_mentions_record_the_deciding_cue():
    r = label_report("A small subdural haematoma cannot be excluded. The orbits are unremarkable.")
    (sdh,) = [m for m in r.mentions if m.concept == "subdural"]
    assert sdh.state == UNCERTAIN and sdh.cue == "cannot be excluded" and sdh.sentence_index == 0
    (orbit,) = [m for m in r.mentions if m.concept == "orbit_anatomy"]
    assert orbit.state == ABSENT and "unremarkable" in orbit.cue and orbit.sentence_index == 1
    json.dumps(r.to_dict())


@pytest.mark.parametrize(
    "text, expected",
    [
        ("No haemorrhage. No shift.", ["No haemorrhage.", "No shift."]),
        ("Midline shift of 3.5 mm. No hydrocephalus.", ["Midline shift of 3.5 mm.", "No hydrocephalus."]),
        ("Small bleed, e.g. in the sulci. Nothing else.", ["Small bleed, e.g. in the sulci.", "Nothing else."]),
        ("FINDINGS:\nNo bleed.\n\nIMPRESSION:\n- Normal.", ["FINDINGS:", "No bleed.", "IMPRESSION:", "Normal."]),
        ("1. No fracture. 2. Clear sinuses.", ["No fracture.", "2.", "Clear sinuses."]),
        ("?SDH vs hygroma. Is there SAH? No.", ["?SDH vs hygroma.", "Is there SAH?", "No."]),
        ("no acute bleed. no shift", ["no acute bleed.", "no shift"]),
        ("Shift (3 mm). Ventricles normal.", ["Shift (3 mm).", "Ventricles normal."]),
        ("Discussed with J. Smith. No bleed.", ["Discussed with J. Smith.", "No bleed."]),
        ("\nNo bleed.\n  \nNo shift.", ["No bleed.", "No shift."]),
        ("", []),
        ("   \n  \r\n ", []),
    ],
)
def test_sentence_splitting(text, expected):
    assert split_sentences(text) == expected


def test_negation_does_not_cross_sentences_or_terminators():
    s = label_report("No skull fracture. Subdural haematoma.").states
    assert s["subdural_haemorrhage"] == PRESENT
    s = label_report("No midline shift, but there is a small subdural haematoma.").states
    assert (s["midline_shift"], s["subdural_haemorrhage"]) == (ABSENT, PRESENT)
    s = label_report("No haemorrhage; hydrocephalus.").states
    assert s["hydrocephalus"] == PRESENT


def test_garbage_and_empty_reports():
    for text in (None, "", "   ", "asdf qwerty 12345 !!!", "\x00\xff" * 100, 42):
        states = label_report(text).states
        assert set(states.values()) == {NOT_MENTIONED}
    long = label_report("No acute intracranial haemorrhage. " * 3000)
    assert long.truncated and long.states["subdural_haemorrhage"] == ABSENT


# ------------------------------------------------------------------------------------------------- scoring
REF = "Acute right subdural haematoma with midline shift. Left maxillary sinus mucosal thickening. No skull fracture."


def test_perfect_candidate_scores_one_in_every_group():
    c = compare_findings(REF, REF)
    for group in ("intracranial", "skull", "extracranial", "all"):
        assert c.groups[group].f1 == 1.0
    assert c.groups["skull"].vacuous and not c.groups["intracranial"].vacuous


def test_missed_and_invented_findings_by_group():
    cand = "Acute right subdural haematoma. Scalp haematoma. The sinuses are clear."
    c = compare_findings(cand, REF)
    intra = c.groups["intracranial"]
    assert (intra.tp, intra.fp, intra.fn) == (2, 0, 1)  # sdh + parent ich found, midline shift missed
    assert intra.precision == 1.0 and intra.recall == pytest.approx(2 / 3) and intra.f1 == pytest.approx(0.8)
    extra = c.groups["extracranial"]
    assert (extra.tp, extra.fp, extra.fn) == (0, 1, 1) and extra.f1 == 0.0 and extra.precision == extra.recall == 0.0
    assert extra.agreement == pytest.approx(2 / 4)
    assert c.groups["all"].tp == 2 and c.groups["all"].fp == 1 and c.groups["all"].fn == 2
    d = c.to_dict()
    json.dumps(d)
    assert d["reference"]["sinus_disease"] == PRESENT


def test_uncertain_policy():
    ref = "Small subdural haematoma."
    cand = "Possible small subdural haematoma."
    assert compare_findings(cand, ref).groups["intracranial"].f1 == 1.0  # default: uncertain counts as positive
    neg = compare_findings(cand, ref, uncertain="negative").groups["intracranial"]
    assert (neg.tp, neg.fn) == (0, 2) and neg.f1 == 0.0
    excl = compare_findings(cand, ref, uncertain="exclude").groups["intracranial"]
    assert excl.n_labels == len([g for g in finding_labels().values() if g == "intracranial"]) - 2
    assert excl.vacuous and excl.f1 == 1.0
    with pytest.raises(ValueError, match="uncertain must be one of"):
        compare_findings(cand, ref, uncertain="maybe")


def test_normal_vs_normal_is_vacuous_agreement_and_normal_vs_abnormal_is_zero():
    normal = "No acute intracranial haemorrhage. The paranasal sinuses are clear."
    both = compare_findings(normal, "Normal CT head.")
    assert both.groups["intracranial"].vacuous and both.groups["intracranial"].f1 == 1.0
    miss = compare_findings(normal, REF).groups["intracranial"]
    assert miss.f1 == 0.0 and math.isnan(miss.precision) and miss.recall == 0.0


def test_corpus_score_is_micro_averaged_and_keeps_per_sample_order():
    cands = [REF, "Normal CT head.", "Possible subdural haematoma."]
    refs = [REF, "Subdural haematoma.", "Subdural haematoma."]
    score = score_findings(cands, refs)
    assert score.n == 3
    assert score.per_sample_f1["intracranial"] == [1.0, 0.0, 1.0]
    micro = score.micro["intracranial"]
    assert (micro.tp, micro.fp, micro.fn) == (3 + 0 + 2, 0, 2)
    assert micro.f1 == pytest.approx(2 * 5 / (2 * 5 + 0 + 2))
    assert score.mean_f1("intracranial") == pytest.approx(2 / 3)
    json.dumps(score.to_dict())
    with pytest.raises(ValueError, match="2 candidates for 1"):
        score_findings(["a", "b"], ["a"])


def test_labels_and_groups():
    labels = finding_labels()
    assert labels["skull_fracture"] == "skull"
    assert {k for k, g in labels.items() if g == "extracranial"} == {
        "sinus_disease", "orbital_abnormality", "scalp_soft_tissue", "facial_fracture"}
    assert len(labels) == 17


def test_mentions_keep_the_words_and_sentence_they_came_from():
    r = label_report("No bleed. A small subdural haematoma cannot be excluded.")
    (sdh,) = [m for m in r.mentions if m.concept == "subdural"]
    assert (sdh.text, sdh.sentence, sdh.sentence_index) == (
        "subdural haematoma", "A small subdural haematoma cannot be excluded.", 1)


def test_empty_report_has_no_mentions_and_is_not_truncated():
    everything_unmentioned = {label: NOT_MENTIONED for label in finding_labels()}
    for text in ("", None, "  \n"):
        assert label_report(text) == ReportFindings(everything_unmentioned, [], False)


def test_reports_are_truncated_only_beyond_50000_characters():
    sentence = "No skull fracture. "
    body = sentence * (50_000 // len(sentence))
    exact = body + "x" * (50_000 - len(body))
    assert len(exact) == 50_000 and not label_report(exact).truncated
    assert label_report(exact + "y").truncated


def test_positive_labels_by_policy():
    r = label_report("Subdural haematoma. Possible skull fracture. No hydrocephalus.")
    assert r.positive() == {"intracranial_haemorrhage", "subdural_haemorrhage", "skull_fracture"}
    assert r.positive("negative") == {"intracranial_haemorrhage", "subdural_haemorrhage"}


def test_lexicon_mini_language():
    def matches(pattern, text):
        return re.search(findings._compile(pattern), text, re.IGNORECASE) is not None

    # " ?" = optional space or hyphen, " " = spaces or hyphens, "~" = a gap of up to 4 words
    assert all(matches("intra ?cranial", t) for t in ("intracranial", "intra-cranial", "intra cranial"))
    assert matches("mass effect", "mass - effect") and not matches("mass effect", "masseffect")
    assert matches("skull~fracture", "skull vault and base fracture")
    assert not matches("skull~fracture", "skull a b c d e fracture")  # 5 words: too far
    assert not matches("skull~fracture", "skull but no fracture")  # a gap never crosses a negation
    # inside a character class, a space and a tilde are themselves; a backslash escapes the next character
    assert matches("grey[ ]white", "grey white") and not matches("grey[ ]white", "grey-white")
    assert matches("a[~]b", "a~b")
    assert matches(r"no\ bleed", "no bleed") and not matches(r"no\ bleed", "no-bleed")
    assert matches(r"a\~b", "a~b") and not matches(r"a\~b", "a b")
    assert matches(r"a\~b c", "a~b-c")  # after an escape the rest of the pattern is translated as usual
    assert matches("gr[ae]y white", "gray-white")  # and after a class closes
    # whole words only: not inside a longer word, not after a hyphen ("non-haemorrhagic")
    assert matches("sdh", "left SDH.") and not matches("sdh", "sdhx") and not matches("sdh", "xsdh")
    assert not matches("haemorrhagic", "non-haemorrhagic") and not matches("fractures?", "fractured")
    # a pattern starting with a backslash (punctuation cue) carries its own context: no word boundary added
    assert matches(r"\?(?=[a-z])", "query?sdh")
    # nor does a pattern starting or ending with punctuation ("Sinuses:clear", "hydrocephalus: none")
    assert matches(": none", "hydrocephalus: none") and matches("sinuses:", "Sinuses:clear")


def test_counts_with_an_uncertain_reference():
    cand, ref = "Subdural haematoma.", "Possible subdural haematoma."
    assert compare_findings(cand, ref).groups["intracranial"].f1 == 1.0
    neg = compare_findings(cand, ref, uncertain="negative").groups["intracranial"]
    assert (neg.tp, neg.fp, neg.fn) == (0, 2, 0) and neg.precision == 0.0 and math.isnan(neg.recall)


@pytest.mark.parametrize(
    "cand, ref, expected",
    [
        # tp, fp, fn, tn, precision, recall, f1, agreement (extracranial: sinus, orbit, scalp, facial fracture)
        ("Sinusitis. Nasal bone fracture.", "Sinusitis. Scalp haematoma.", (1, 1, 1, 1, 0.5, 0.5, 0.5, 0.5)),
        ("Sinusitis. Nasal bone fracture. Scalp haematoma.", "Sinusitis. Scalp haematoma.",
         (2, 1, 0, 1, 2 / 3, 1.0, 0.8, 0.75)),
        ("Nasal bone fracture.", "Normal CT head.", (0, 1, 0, 3, 0.0, None, 0.0, 0.75)),
    ],
    ids=["one-of-each", "one-invented", "nothing-to-find"],
)
def test_group_figures_against_hand_counts(cand, ref, expected):
    got = compare_findings(cand, ref).groups["extracranial"].to_dict()
    tp, fp, fn, tn, precision, recall, f1, agreement = expected
    assert got == {"group": "extracranial", "tp": tp, "fp": fp, "fn": fn, "tn": tn, "n_labels": 4,
                   "precision": pytest.approx(precision), "recall": None if recall is None else pytest.approx(recall),
                   "f1": pytest.approx(f1), "agreement": pytest.approx(agreement), "vacuous": False}


def test_a_group_with_no_label_left_is_undefined_not_perfect():
    c = compare_findings("Possible skull fracture.", "Skull fracture.", uncertain="exclude")
    assert c.groups["skull"].to_dict() == {"group": "skull", "tp": 0, "fp": 0, "fn": 0, "tn": 0, "precision": None,
                                           "recall": None, "f1": None, "agreement": None, "n_labels": 0,
                                           "vacuous": True}


def test_comparison_and_corpus_records():
    c = compare_findings("Possible subdural haematoma.", "Subdural haematoma.", uncertain="negative")
    assert all(score.group == g for g, score in c.groups.items())
    d = c.to_dict()
    assert set(d) == {"groups", "uncertain", "candidate", "reference"} and d["uncertain"] == "negative"
    assert d["groups"]["intracranial"]["fn"] == 2
    assert d["candidate"]["subdural_haemorrhage"] == UNCERTAIN and d["reference"]["subdural_haemorrhage"] == PRESENT
    # already-labelled reports are scored as they are
    pre = compare_findings(label_report("Possible subdural haematoma."), label_report("Subdural haematoma."),
                           uncertain="negative")
    assert pre.to_dict() == d

    score = score_findings(["Possible subdural haematoma.", REF], ["Subdural haematoma.", REF], uncertain="negative")
    assert score.uncertain == "negative" and score.per_sample_f1["intracranial"] == [0.0, 1.0]
    assert all(s.group == g for g, s in score.micro.items())
    assert score.micro["all"].n_labels == 2 * 17
    assert (score.micro["all"].tp, score.micro["all"].fn, score.micro["all"].tn) == (4, 2, 2 * 17 - 6)
    assert score.mean_f1() == pytest.approx(sum(score.per_sample_f1["all"]) / 2)
    d = score.to_dict()
    assert set(d) == {"micro", "per_sample_f1", "n", "uncertain"}
    assert (d["n"], d["uncertain"], d["per_sample_f1"]["intracranial"]) == (2, "negative", [0.0, 1.0])
    assert d["micro"]["intracranial"]["fn"] == 2


def test_empty_corpus_has_undefined_scores():
    score = score_findings([], [])
    assert score.n == 0 and math.isnan(score.mean_f1()) and math.isnan(score.mean_f1("skull"))
    assert score.micro["all"].to_dict()["f1"] is None
